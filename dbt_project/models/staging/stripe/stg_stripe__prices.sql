-- Prices, with legacy plans (the pre-2020 API) for ids that have no price object.
with

prices as (
    select * from {{ source('stripe', 'prices') }}
),

plans as (
    select * from {{ source('stripe', 'plans') }}
),

from_prices as (
    select
        id as price_id,
        data ->> 'product' as product_id,
        lower(data ->> 'currency') as currency,
        (data ->> 'unit_amount_decimal')::numeric as unit_amount_cents,
        data ->> 'billing_scheme' as billing_scheme,
        data ->> 'type' as price_type,
        data -> 'recurring' ->> 'interval' as recurring_interval,
        coalesce((data -> 'recurring' ->> 'interval_count')::int, 1) as recurring_interval_count,
        coalesce(data -> 'recurring' ->> 'usage_type', 'licensed') as usage_type,
        data ->> 'nickname' as nickname,
        created as created_at
    from prices
),

from_plans as (
    select
        id as price_id,
        data ->> 'product' as product_id,
        lower(data ->> 'currency') as currency,
        coalesce((data ->> 'amount_decimal')::numeric, (data ->> 'amount')::numeric) as unit_amount_cents,
        data ->> 'billing_scheme' as billing_scheme,
        'recurring' as price_type,
        data ->> 'interval' as recurring_interval,
        coalesce((data ->> 'interval_count')::int, 1) as recurring_interval_count,
        coalesce(data ->> 'usage_type', 'licensed') as usage_type,
        data ->> 'nickname' as nickname,
        created as created_at
    from plans
    where id not in (select price_id from from_prices)
),

final as (
    select * from from_prices
    union all
    select * from from_plans
)

select * from final
