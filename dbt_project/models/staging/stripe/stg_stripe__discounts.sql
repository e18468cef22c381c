-- The coupon behind each discount id, from the discounts subscriptions and invoices were loaded with
-- (expanded: `source.coupon` in the current shape, `coupon` in older ones) and the legacy single
-- `discount` object. Read by the `stripe` methodology (METRICS.md "Methodology"), which counts only
-- forever coupons' discounts. Parsed on every build that reads it: only that methodology does.
with

objects as (
    select
        account,
        data
    from {{ source('stripe', 'subscriptions') }}
    union all
    select
        account,
        data
    from {{ source('stripe', 'invoices') }}
),

expanded as (
    select
        objects.account,
        discounts.discount
    from objects
    cross join
        lateral jsonb_array_elements(
            case
                when jsonb_typeof(objects.data -> 'discounts') = 'array' then objects.data -> 'discounts'
                else '[]'
            end
        ) as discounts (discount)
    union all
    select
        account,
        data -> 'discount' as discount
    from objects
    where jsonb_typeof(data -> 'discount') = 'object'
),

final as (
    select distinct on (discount_id)
        discount_id,
        billing_account,
        coupon_id
    from (
        select
            discount ->> 'id' as discount_id,
            account as billing_account,
            coalesce(
                case when jsonb_typeof(discount -> 'source' -> 'coupon') = 'string'
                    then discount -> 'source' ->> 'coupon'
                end,
                discount -> 'source' -> 'coupon' ->> 'id',
                discount -> 'coupon' ->> 'id'
            ) as coupon_id
        from expanded
        where jsonb_typeof(discount) = 'object'
    ) as discounts
    where discount_id is not null and coupon_id is not null
    order by discount_id, coupon_id
)

select * from final
