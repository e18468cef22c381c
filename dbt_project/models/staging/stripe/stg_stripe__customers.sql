with

source as (
    select * from {{ source('stripe', 'customers') }}
),

final as (
    select
        -- ids
        id as customer_id,
        -- attributes
        data ->> 'email' as email,
        data ->> 'name' as customer_name,
        lower(data ->> 'currency') as currency,
        data -> 'address' ->> 'country' as country,
        data -> 'metadata' as metadata,
        coalesce((data ->> 'deleted')::boolean, false) as is_deleted,
        coalesce((data ->> 'livemode')::boolean, false) as is_livemode,
        -- timestamps
        created as created_at,
        synced_at
    from source
)

select * from final
