-- The billing contract's prices (METRICS.md "The billing contract"): what a recurring line is billed at,
-- per source and account. Stripe's prices (and legacy plans) as staged; a contract plan per plan named in
-- the contracts file (its product of the same name; interval and currency those of its latest version).
with

stripe as (
    select
        price_id,
        billing_account,
        'stripe' as billing_source,
        product_id,
        currency,
        unit_amount_cents,
        billing_scheme,
        price_type,
        recurring_interval,
        recurring_interval_count,
        usage_type,
        nickname,
        created_at
    from {{ ref('stg_stripe__prices') }}
),

contracts as (
    select distinct on (billing_account, price_id)
        price_id,
        billing_account,
        'contracts' as billing_source,
        'contracts:' || price_id as product_id,
        currency,
        null::numeric as unit_amount_cents,
        'per_unit' as billing_scheme,
        'recurring' as price_type,
        billing_interval as recurring_interval,
        interval_count as recurring_interval_count,
        'licensed' as usage_type,
        price_id as nickname,
        valid_from as created_at
    from {{ ref('stg_finance__contracts') }}
    order by billing_account asc, price_id asc, valid_from desc
),

final as (
    select * from stripe
    union all
    select * from contracts
)

select * from final
