-- MRR at the end of each month by product and price (the current month: as of today).
with

changes as (
    select * from {{ ref('int_subscription_prices_mrr_changes') }}
),

prices as (
    select * from {{ ref('stg_stripe__prices') }}
),

products as (
    select * from {{ ref('stg_stripe__products') }}
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

as_of as (
    select ({{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_date
),

spans as (
    select
        subscription_id,
        customer_id,
        price_id,
        currency,
        mrr_local,
        changed_at as valid_from,
        lead(changed_at) over (partition by subscription_id, price_id order by changed_at) as valid_to
    from changes
),

month_ends as (
    select
        spans.*,
        months.month::date as month,
        least((months.month + interval '1 month - 1 day')::date, as_of.as_of_date) as snapshot_date
    from spans
    cross join as_of
    cross join lateral generate_series(
        date_trunc('month', spans.valid_from at time zone 'UTC'),
        date_trunc('month', coalesce(spans.valid_to at time zone 'UTC', as_of.as_of_date::timestamp)),
        interval '1 month'
    ) as months (month)
    where spans.mrr_local <> 0
        and months.month <= as_of.as_of_date
),

-- the level in force at the end of the snapshot day
in_span as (
    select *
    from month_ends
    where (valid_from at time zone 'UTC')::date <= snapshot_date
        and (valid_to is null or (valid_to at time zone 'UTC')::date > snapshot_date)
),

-- per customer first (hash aggregates, no sort for the distinct counts): a subscription has at most
-- one span of a price in force on a day, so its rows here count subscriptions
per_customer as (
    select
        in_span.month,
        in_span.price_id,
        in_span.customer_id,
        sum(round(in_span.mrr_local * {{ fx_rate('in_span.currency', 'fx.rate') }}, 4)) as mrr,
        count(*) as subscriptions
    from in_span
    left join fx
        on in_span.snapshot_date = fx.rate_date
        and in_span.currency = fx.currency
    group by 1, 2, 3
),

per_price as (
    select
        month,
        price_id,
        sum(mrr) as mrr,
        sum(subscriptions)::bigint as subscriptions,
        count(*) as customers
    from per_customer
    group by 1, 2
),

final as (
    select
        per_price.month,
        prices.product_id,
        products.product_name,
        per_price.price_id,
        prices.nickname as price_nickname,
        prices.recurring_interval as billing_interval,
        prices.recurring_interval_count as billing_interval_count,
        per_price.mrr,
        per_price.subscriptions,
        per_price.customers
    from per_price
    left join prices
        on per_price.price_id = prices.price_id
    left join products
        on prices.product_id = products.product_id
)

select * from final
