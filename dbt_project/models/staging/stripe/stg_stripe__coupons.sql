with

source as (
    select * from {{ source('stripe', 'coupons') }}
),

final as (
    select
        id as coupon_id,
        (data ->> 'percent_off')::numeric as percent_off,
        (data ->> 'amount_off')::bigint as amount_off_cents,
        lower(data ->> 'currency') as currency,
        data ->> 'duration' as duration,
        (data ->> 'duration_in_months')::int as duration_in_months,
        created as created_at
    from source
)

select * from final
