-- MRR at the end of each month by product and price (the current month: as of today), added up from
-- int_customer_price_mrr_monthly.
with

customer_prices as (
    select * from {{ ref('int_customer_price_mrr_monthly') }}
),

prices as (
    select * from {{ ref('billing_prices') }}
),

products as (
    select * from {{ ref('billing_products') }}
),

as_of as (
    select date_trunc('month', {{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_month
),

per_price as (
    select
        month,
        billing_account,
        price_id,
        sum(mrr) as mrr,
        sum(subscriptions)::bigint as subscriptions,
        count(*) as customers
    from customer_prices
    -- a customer billed in a currency without a rate is left out (METRICS.md "Currencies")
    where mrr is not null
    group by month, billing_account, price_id
),

final as (
    select
        per_price.month,
        per_price.billing_account,
        prices.product_id,
        products.product_name,
        per_price.price_id,
        prices.nickname as price_nickname,
        prices.recurring_interval as billing_interval,
        prices.recurring_interval_count as billing_interval_count,
        per_price.mrr,
        per_price.subscriptions,
        per_price.customers,
        -- the running month is as of today (METRICS.md "Complete months")
        per_price.month < as_of.as_of_month as is_complete_month
    from per_price
    cross join as_of
    left join prices
        on per_price.billing_account = prices.billing_account and per_price.price_id = prices.price_id
    left join products
        on prices.billing_account = products.billing_account and prices.product_id = products.product_id
)

select * from final
