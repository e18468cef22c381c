{{ config(materialized='table') }}
-- A table, not a view like the other staging models: the prices embedded in 116k subscription items
-- (at 100,000 customers) are read once per build, not by every model and test that reads prices.
-- Prices, with legacy plans (the pre-2020 API) for ids that have no price object, and the prices embedded
-- in subscription items for ids neither list returned (a deleted legacy plan that subscriptions still bill:
-- METRICS.md "Inputs"). Prices the lists miss that invoices name are also fetched by id at load time.
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
        account as billing_account,
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
        account as billing_account,
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
    where not exists (
            select 1 from from_prices
            where from_prices.billing_account = plans.account and from_prices.price_id = plans.id
        )
),

-- one embedded copy per id (a price never changes its amount or interval)
embedded as (
    select distinct on (account, price_id)
        account as billing_account,
        coalesce(data -> 'price' ->> 'id', data -> 'plan' ->> 'id') as price_id,
        coalesce(data -> 'price', data -> 'plan') as price,
        data -> 'price' is not null as is_price
    from {{ source('stripe', 'subscription_items') }}
    where coalesce(data -> 'price' ->> 'id', data -> 'plan' ->> 'id') is not null
    order by account asc, price_id asc, synced_at desc
),

from_items as (
    select
        price_id,
        billing_account,
        price ->> 'product' as product_id,
        lower(price ->> 'currency') as currency,
        case
            when is_price then (price ->> 'unit_amount_decimal')::numeric
            else coalesce((price ->> 'amount_decimal')::numeric, (price ->> 'amount')::numeric)
        end as unit_amount_cents,
        price ->> 'billing_scheme' as billing_scheme,
        case when is_price then price ->> 'type' else 'recurring' end as price_type,
        coalesce(price -> 'recurring' ->> 'interval', price ->> 'interval') as recurring_interval,
        coalesce((price -> 'recurring' ->> 'interval_count')::int, (price ->> 'interval_count')::int, 1)
            as recurring_interval_count,
        coalesce(price -> 'recurring' ->> 'usage_type', price ->> 'usage_type', 'licensed') as usage_type,
        price ->> 'nickname' as nickname,
        to_timestamp((price ->> 'created')::bigint) as created_at
    from embedded
    where not exists (
            select 1 from from_prices
            where from_prices.billing_account = embedded.billing_account and from_prices.price_id = embedded.price_id
        )
        and not exists (
            select 1 from from_plans
            where from_plans.billing_account = embedded.billing_account and from_plans.price_id = embedded.price_id
        )
),

final as (
    select * from from_prices
    union all
    select * from from_plans
    union all
    select * from from_items
)

select * from final
