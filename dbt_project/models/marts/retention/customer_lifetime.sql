-- One row per customer that ever paid: when it started, when it churned, what it paid in all
-- (METRICS.md "Customer lifetime").
with

movements as (
    select * from {{ ref('mrr_movements') }}
),

current_mrr as (
    select * from {{ ref('customer_mrr_current') }}
),

changes as (
    select * from {{ ref('int_subscription_prices_mrr_changes') }}
),

prices as (
    select * from {{ ref('billing_prices') }}
),

products as (
    select * from {{ ref('billing_products') }}
),

revenue as (
    select * from {{ ref('int_customer_revenue') }}
),

customers as (
    select * from {{ ref('billing_customers') }}
),

as_of as (
    select ({{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_date
),

spans as (
    select
        customer_id,
        min(movement_date) as first_paid_date,
        max(movement_date) filter (where movement_type = 'churn') as last_churn_date
    from movements
    group by customer_id
),

-- the plan: the product of the price most recently paid for (the largest, on a tie)
last_prices as (
    select distinct on (changes.customer_id)
        changes.customer_id,
        changes.billing_account,
        prices.product_id
    from changes
    left join prices
        on changes.billing_account = prices.billing_account and changes.price_id = prices.price_id
    where changes.mrr_local > 0
    order by changes.customer_id asc, changes.changed_at desc, changes.mrr_local desc
),

final as (
    select
        -- ids
        spans.customer_id,
        customers.billing_account,
        -- dates
        spans.first_paid_date,
        case when not current_mrr.is_paying then spans.last_churn_date end as churn_date,
        round((
            coalesce(case when not current_mrr.is_paying then spans.last_churn_date end, as_of.as_of_date)
            - spans.first_paid_date
        ) / 30.4375, 1) as tenure_months,
        -- amounts
        current_mrr.mrr as current_mrr,
        round(coalesce(revenue.paid_revenue, 0) - coalesce(revenue.credited_revenue, 0), 4) as lifetime_revenue,
        -- attributes
        products.product_name as plan,
        customers.country,
        customers.metadata ->> 'channel' as acquisition_channel
    from spans
    cross join as_of
    left join current_mrr
        on spans.customer_id = current_mrr.customer_id
    left join last_prices
        on spans.customer_id = last_prices.customer_id
    left join products
        on last_prices.billing_account = products.billing_account and last_prices.product_id = products.product_id
    left join revenue
        on spans.customer_id = revenue.customer_id
    left join customers
        on spans.customer_id = customers.customer_id
)

select * from final
