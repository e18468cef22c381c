-- Trials ending (METRICS.md "MRR forecast", trials): per month, the trials in progress that end in it, at
-- their licensed prices' MRR in the reporting currency (today's rate, the latest of int_fx_rates_daily),
-- and how many. The forecast converts them at the trials' historical 30-day conversion rate.
-- A trial's MRR is its items' quantity x unit price normalised to a month (macros/money.sql, as the engine
-- normalises a price; rounded to 4 decimals, then converted and rounded as the engine's marts are); a
-- currency without a rate gives a null MRR (its trials still counted). Keys are per billing account.
-- Rebuilt every build from the trials in progress (small).

with

subscriptions as (
    select * from {{ ref('billing_subscriptions') }}
),

items as (
    select * from {{ ref('stg_stripe__subscription_items') }}
),

prices as (
    select * from {{ ref('billing_prices') }}
),

latest_rates as (
    select
        currency,
        rate
    from {{ ref('int_fx_rates_daily') }}
    where rate_date = (select max(fx.rate_date) from {{ ref('int_fx_rates_daily') }} as fx)
),

trial_items as (
    select
        subscriptions.subscription_id,
        date_trunc('month', subscriptions.trial_ended_at at time zone 'UTC')::date as trial_end_month,
        round(
            round(
                items.quantity
                * {{ cents_to_major('prices.unit_amount_cents', 'prices.currency') }}
                * {{ monthly_factor('prices.recurring_interval', 'prices.recurring_interval_count') }}, 4
            ) * {{ fx_rate('prices.currency', 'latest_rates.rate') }}, 4
        ) as mrr
    from subscriptions
    inner join items
        on subscriptions.billing_account = items.billing_account
        and subscriptions.subscription_id = items.subscription_id
    inner join prices
        on items.billing_account = prices.billing_account and items.price_id = prices.price_id
    left join latest_rates on prices.currency = latest_rates.currency
    where subscriptions.status = 'trialing'
        and subscriptions.trial_ended_at is not null
        and prices.usage_type = 'licensed'
),

final as (
    select
        trial_end_month,
        sum(mrr) as mrr,
        count(distinct subscription_id) as trials
    from trial_items
    group by trial_end_month
)

select * from final
