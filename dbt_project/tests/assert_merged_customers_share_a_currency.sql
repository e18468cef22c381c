-- A mapping (METRICS.md "One customer across sources") merges customers billed in one currency only: the engine
-- follows each customer's MRR in its billing currency. A row here is a key whose subscriptions have two.
select
    customer_id,
    string_agg(distinct currency, ', ') as currencies
from {{ ref('billing_subscriptions') }}
where customer_id in (select mapping.customer_key from {{ ref('stg_finance__customer_mapping') }} as mapping)
group by customer_id
having count(distinct currency) > 1
