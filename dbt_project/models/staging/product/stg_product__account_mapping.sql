with

source as (
    select * from {{ source('product', 'account_mapping') }}
),

final as (
    select
        account_id,
        customer_id
    from source
    where account_id is not null and customer_id is not null
)

select * from final
