with

source as (
    select * from {{ source('stripe', 'subscription_items') }}
),

final as (
    select
        id as subscription_item_id,
        subscription_id,
        account as billing_account,
        coalesce(data -> 'price' ->> 'id', data -> 'plan' ->> 'id') as price_id,
        coalesce((data ->> 'quantity')::int, 1) as quantity,
        {{ from_unix("data ->> 'current_period_start'") }} as current_period_start_at,
        {{ from_unix("data ->> 'current_period_end'") }} as current_period_end_at,
        {{ from_unix("data ->> 'created'") }} as created_at
    from source
)

select * from final
