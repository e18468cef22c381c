-- The billing contract's products (METRICS.md "The billing contract"): what a price sells, per source and
-- account. Stripe's products as staged; one per plan of the contracts file, named after it.
with

stripe as (
    select
        product_id,
        billing_account,
        'stripe' as billing_source,
        product_name,
        is_active,
        metadata,
        created_at
    from {{ ref('stg_stripe__products') }}
),

contracts as (
    select
        'contracts:' || price_id as product_id,
        billing_account,
        'contracts' as billing_source,
        price_id as product_name,
        true as is_active,
        '{}'::jsonb as metadata,
        min(valid_from) as created_at
    from {{ ref('stg_finance__contracts') }}
    group by price_id, billing_account
),

final as (
    select * from stripe
    union all
    select * from contracts
)

select * from final
