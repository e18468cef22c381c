with

source as (
    select * from {{ source('stripe', 'products') }}
),

final as (
    select
        id as product_id,
        account as billing_account,
        data ->> 'name' as product_name,
        coalesce((data ->> 'active')::boolean, true) as is_active,
        data -> 'metadata' as metadata,
        created as created_at
    from source
)

select * from final
