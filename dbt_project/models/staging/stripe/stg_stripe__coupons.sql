with

source as (
    select * from {{ source('stripe', 'coupons') }}
),

final as (
    select
        id as coupon_id,
        account as billing_account,
        (data ->> 'percent_off')::numeric as percent_off,
        (data ->> 'amount_off')::bigint as amount_off_cents,
        lower(data ->> 'currency') as currency,
        data ->> 'duration' as duration,
        (data ->> 'duration_in_months')::int as duration_in_months,
        -- the products a restricted coupon discounts (returned when expanded); null: every product
        case when jsonb_typeof(data -> 'applies_to' -> 'products') = 'array'
            then data -> 'applies_to' -> 'products'
        end as applies_to_products,
        created as created_at
    from source
)

select * from final
