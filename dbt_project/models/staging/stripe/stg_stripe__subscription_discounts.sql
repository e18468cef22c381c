-- The discounts in force on each subscription (Stripe lists a discount on its subscription until it
-- ends), from the expanded `discounts` of the current shape and the legacy single `discount`: when each
-- started and ends (`end`: null for once and forever coupons), and the coupon's terms when the discount
-- embeds its coupon (legacy `coupon`, or an expanded `source.coupon`; else they come from the coupon).
-- Read by int_discounts_ending (METRICS.md "MRR forecast").
-- Incremental, not a view: only the subscriptions loaded since the last build are parsed; their rows are
-- replaced (the pre-hook drops them first, so a discount a subscription no longer has goes too).
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    indexes=[{'columns': ['subscription_id']}, {'columns': ['synced_at']}],
    pre_hook="{% if is_incremental() %}delete from {{ this }} where subscription_id in (select id from {{ source('stripe', 'subscriptions') }} where synced_at > {{ synced_watermark() }}){% endif %}",
    post_hook='{{ analyze_if_stale() }}',
) }}

with

source as (
    select
        id,
        account,
        data,
        synced_at
    from {{ source('stripe', 'subscriptions') }}
    where (
        (jsonb_typeof(data -> 'discounts') = 'array' and data -> 'discounts' <> '[]'::jsonb)
        or jsonb_typeof(data -> 'discount') = 'object'
    )
    {%- if is_incremental() %}
        and synced_at > {{ synced_watermark() }}
    {%- endif %}
),

expanded as (
    select
        source.id as subscription_id,
        source.account,
        source.data,
        source.synced_at,
        discounts.discount
    from source
    cross join
        lateral jsonb_array_elements(
            case when jsonb_typeof(source.data -> 'discounts') = 'array' then source.data -> 'discounts' else '[]' end
        ) as discounts (discount)
    union all
    select
        id,
        account,
        data,
        synced_at,
        data -> 'discount' as discount
    from source
    where jsonb_typeof(data -> 'discount') = 'object'
),

-- the coupon object, when the discount embeds it
parsed as (
    select
        subscription_id,
        account,
        data,
        synced_at,
        discount,
        case
            when jsonb_typeof(discount -> 'source' -> 'coupon') = 'object' then discount -> 'source' -> 'coupon'
            when jsonb_typeof(discount -> 'coupon') = 'object' then discount -> 'coupon'
        end as coupon
    from expanded
    where jsonb_typeof(discount) = 'object'
),

final as (
    select distinct on (subscription_id, discount ->> 'id')
        -- ids
        discount ->> 'id' as discount_id,
        subscription_id,
        account as billing_account,
        coalesce(data -> 'customer' ->> 'id', data ->> 'customer') as customer_id,
        coalesce(
            case when jsonb_typeof(discount -> 'source' -> 'coupon') = 'string'
                then discount -> 'source' ->> 'coupon'
            end,
            coupon ->> 'id'
        ) as coupon_id,
        -- the embedded coupon's terms
        (coupon ->> 'percent_off')::numeric as percent_off,
        (coupon ->> 'amount_off')::bigint as amount_off_cents,
        lower(coupon ->> 'currency') as amount_off_currency,
        coupon ->> 'duration' as duration,
        -- timestamps
        {{ from_unix("discount ->> 'start'") }} as started_at,
        {{ from_unix("discount ->> 'end'") }} as ends_at,
        synced_at
    from parsed
    where discount ->> 'id' is not null
    order by subscription_id, discount ->> 'id'
)

select * from final
