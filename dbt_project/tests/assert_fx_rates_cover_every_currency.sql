-- Blocking: every currency billed has a rate into the reporting currency (or MRR would be null).
{{ config(severity='error') }}

select distinct currency
from {{ ref('mrr_movements') }}
where fx_rate is null
