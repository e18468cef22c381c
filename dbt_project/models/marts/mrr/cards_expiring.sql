-- Paying subscriptions whose customer's default card expires before their next renewal, by the month of that
-- renewal (METRICS.md "Failed payments and recovery"): the renewal's payment fails unless the card is updated.
-- MRR in the reporting currency at today's rate.
with

subscriptions as (
    select
        subscription_id,
        customer_id,
        legacy_current_period_end_at
    from {{ ref('billing_subscriptions') }}
    where collection_method = 'charge_automatically'
        and ended_at is null
        and not is_cancel_at_period_end
),

-- the current period's end: on the items since API 2025-03-31, on the subscription before
period_ends as (
    select
        subscription_id,
        min(current_period_end_at) as current_period_end_at
    from {{ ref('stg_stripe__subscription_items') }}
    group by subscription_id
),

-- each subscription's MRR today: the sum of its changes
levels as (
    select
        subscription_id,
        min(currency) as currency,
        sum(mrr_change_local) as mrr_local
    from {{ ref('int_subscription_prices_mrr_changes') }}
    group by subscription_id
),

customers as (
    select
        customer_id,
        default_card_expires_on
    from {{ ref('billing_customers') }}
    where default_card_expires_on is not null
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

as_of as (
    select
        {{ as_of_timestamp() }} as as_of_at,
        ({{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_date
),

expiring as (
    select
        subscriptions.subscription_id,
        subscriptions.customer_id,
        levels.currency,
        levels.mrr_local,
        date_trunc(
            'month',
            coalesce(period_ends.current_period_end_at, subscriptions.legacy_current_period_end_at) at time zone 'UTC'
        )::date as renewal_month
    from subscriptions
    cross join as_of
    inner join levels
        on subscriptions.subscription_id = levels.subscription_id
    inner join customers
        on subscriptions.customer_id = customers.customer_id
    left join period_ends
        on subscriptions.subscription_id = period_ends.subscription_id
    where levels.mrr_local > 0
        and coalesce(period_ends.current_period_end_at, subscriptions.legacy_current_period_end_at) > as_of.as_of_at
        and customers.default_card_expires_on < (
            coalesce(period_ends.current_period_end_at, subscriptions.legacy_current_period_end_at) at time zone 'UTC'
        )::date
),

final as (
    select
        expiring.renewal_month as month,
        count(distinct expiring.customer_id) as expiring_customers,
        count(*) as expiring_subscriptions,
        round(sum(expiring.mrr_local * {{ fx_rate('expiring.currency', 'fx.rate') }}), 4) as mrr_at_risk
    from expiring
    cross join as_of
    left join fx
        on expiring.currency = fx.currency
        and as_of.as_of_date = fx.rate_date
    group by expiring.renewal_month
)

select * from final
