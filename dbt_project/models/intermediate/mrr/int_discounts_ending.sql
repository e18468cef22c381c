-- Coupons ending: per paying subscription, each discount that stops within the MRR forecast's 12 months
-- (the month in progress and the 11 after it), the month its MRR comes back and how much (METRICS.md
-- "MRR forecast", coupons ending): the committed expansion the forecast reads.
--   regained_at: the first period start at or after the discount's `end` (the current period's end, plus
--                whole billing intervals): the engine counts the end at the next cycle invoice, at full
--                price (METRICS.md "Coupons"); an annual subscription regains at its renewal.
--   mrr_regained_local: what the engine will count then, from its level today (int_subscription_prices_
--                mrr_changes) of each price the coupon discounts: percent_off p of a price whose discounts
--                add up to P percent (each off the full price) is level x p / (100 - P); amount_off is the
--                amount per invoice normalised to a month (in the coupon's currency, the subscription's).
-- Left out: subscriptions paying nothing today (a 100% coupon or a trial: their end is new MRR, not
-- expansion), ended ones, and those whose cancellation takes effect at or before regained_at (cancel at
-- period end, or cancel_at); the `stripe` methodology counts repeating coupons at full price already,
-- so under it nothing is regained. A table over the discounts in force, not a scan of invoice lines.
{%- set stripe = mrr_methodology() == 'stripe' %}

with

discounts as (
    select * from {{ ref('stg_stripe__subscription_discounts') }}
),

coupons as (
    select * from {{ ref('stg_stripe__coupons') }}
),

subscriptions as (
    select * from {{ ref('stg_stripe__subscriptions') }}
),

items as (
    select * from {{ ref('stg_stripe__subscription_items') }}
),

prices as (
    select * from {{ ref('stg_stripe__prices') }}
),

changes as (
    select * from {{ ref('int_subscription_prices_mrr_changes') }}
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

as_of as (
    select
        {{ as_of_timestamp() }} as as_of_at,
        ({{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_date,
        -- the first instant after the forecast's 12 months (the month in progress is the first)
        (date_trunc('month', {{ as_of_timestamp() }} at time zone 'UTC') + interval '12 months')
        at time zone 'UTC' as horizon_end_at
),

-- every discount in force, with its coupon's terms (the discount's own copy of its coupon, else the coupon)
terms as (
    select
        discounts.discount_id,
        discounts.subscription_id,
        discounts.customer_id,
        discounts.billing_account,
        discounts.coupon_id,
        coalesce(discounts.percent_off, coupons.percent_off) as percent_off,
        coalesce(discounts.amount_off_cents, coupons.amount_off_cents) as amount_off_cents,
        coalesce(discounts.amount_off_currency, coupons.currency) as amount_off_currency,
        coupons.applies_to_products,
        discounts.ends_at
    from discounts
    left join coupons
        on discounts.billing_account = coupons.billing_account and discounts.coupon_id = coupons.coupon_id
),

ending as (
    select terms.*
    from terms
    cross join as_of
    where terms.ends_at > as_of.as_of_at
        and terms.ends_at < as_of.horizon_end_at
    {%- if stripe %}
        and false
        {%- endif %}
),

-- the engine's level today of each price of those subscriptions (its last change), if above zero
levels as (
    select
        latest.subscription_id,
        latest.price_id,
        latest.currency,
        latest.mrr_local,
        prices.product_id,
        prices.recurring_interval,
        prices.recurring_interval_count
    from (
        select distinct on (subscription_id, price_id)
            subscription_id,
            billing_account,
            price_id,
            currency,
            mrr_local
        from changes
        where subscription_id in (select ending.subscription_id from ending)
        order by subscription_id asc, price_id asc, changed_at desc
    ) as latest
    inner join prices
        on latest.billing_account = prices.billing_account and latest.price_id = prices.price_id
    where latest.mrr_local > 0
),

-- per price, the percent discounts in force on it, added up
price_percent_off as (
    select
        levels.subscription_id,
        levels.price_id,
        sum(terms.percent_off) as total_percent_off
    from levels
    inner join terms
        on levels.subscription_id = terms.subscription_id
        and (terms.applies_to_products is null or terms.applies_to_products ? levels.product_id)
    where terms.percent_off is not null
    group by levels.subscription_id, levels.price_id
),

valued as (
    select
        ending.discount_id,
        ending.subscription_id,
        ending.customer_id,
        ending.coupon_id,
        ending.ends_at,
        min(levels.currency) as currency,
        min(levels.recurring_interval) as recurring_interval,
        min(levels.recurring_interval_count) as recurring_interval_count,
        case
            when ending.percent_off is not null then
                round(sum(
                    levels.mrr_local * ending.percent_off / nullif(100 - price_percent_off.total_percent_off, 0)
                ), 4)
            when ending.amount_off_cents is not null and ending.amount_off_currency = min(levels.currency) then
                round(
                    {{ cents_to_major('ending.amount_off_cents', 'ending.amount_off_currency') }}
                    * {{ monthly_factor('min(levels.recurring_interval)', 'min(levels.recurring_interval_count)') }}, 4
                )
        end as mrr_regained_local
    from ending
    inner join levels
        on ending.subscription_id = levels.subscription_id
        and (ending.applies_to_products is null or ending.applies_to_products ? levels.product_id)
    left join price_percent_off
        on levels.subscription_id = price_percent_off.subscription_id
        and levels.price_id = price_percent_off.price_id
    group by
        ending.discount_id,
        ending.subscription_id,
        ending.customer_id,
        ending.coupon_id,
        ending.ends_at,
        ending.percent_off,
        ending.amount_off_cents,
        ending.amount_off_currency
),

period_ends as (
    select
        subscription_id,
        min(current_period_end_at) as current_period_end_at
    from items
    where subscription_id in (select valued.subscription_id from valued)
    group by subscription_id
),

-- the first period start at or after the discount's end: the current period's end plus whole intervals
-- (calendar months in UTC, as Stripe bills)
regained as (
    select
        valued.*,
        subscriptions.ended_at,
        subscriptions.is_cancel_at_period_end,
        subscriptions.cancel_at,
        (
            select min(boundaries.boundary)
            from generate_series(
                    0, case valued.recurring_interval when 'day' then 400 when 'week' then 60 else 13 end
                ) as steps (step),
                lateral (
                    select (period_end.at_utc + case valued.recurring_interval
                        when 'month' then make_interval(months => steps.step * valued.recurring_interval_count)
                        when 'year' then make_interval(years => steps.step * valued.recurring_interval_count)
                        when 'week' then make_interval(weeks => steps.step * valued.recurring_interval_count)
                        when 'day' then make_interval(days => steps.step * valued.recurring_interval_count)
                    end) at time zone 'UTC' as boundary
                ) as boundaries
            where boundaries.boundary >= valued.ends_at
        ) as regained_at
    from valued
    inner join subscriptions
        on valued.subscription_id = subscriptions.subscription_id
    left join period_ends
        on valued.subscription_id = period_ends.subscription_id
    -- a lateral subquery reads the row it joins: no CTE can stand for it
    cross join
        lateral ( -- noqa: ST05
            select
                coalesce(period_ends.current_period_end_at, subscriptions.legacy_current_period_end_at)
                at time zone 'UTC' as at_utc
        ) as period_end
    where valued.mrr_regained_local > 0
),

final as (
    select
        -- ids
        regained.discount_id,
        regained.subscription_id,
        regained.customer_id,
        regained.coupon_id,
        -- when
        (date_trunc('month', regained.regained_at at time zone 'UTC'))::date as regained_month,
        -- amounts
        round(regained.mrr_regained_local * {{ fx_rate('regained.currency', 'fx.rate') }}, 4) as mrr_regained,
        regained.mrr_regained_local,
        regained.currency,
        -- timestamps
        regained.ends_at,
        regained.regained_at
    from regained
    cross join as_of
    left join fx
        on regained.currency = fx.currency
        and as_of.as_of_date = fx.rate_date
    where regained.regained_at < as_of.horizon_end_at
        and regained.ended_at is null
        and not regained.is_cancel_at_period_end
        and (regained.cancel_at is null or regained.cancel_at > regained.regained_at)
)

select * from final
