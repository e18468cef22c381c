-- Per account and ISO week (Monday start, UTC): activity, breadth, seats in use, and the health
-- score of METRICS.md "Account health", from the account's first active week to the current one.
-- Weeks without events are rows with zeros: silence is the signal.
{{ config(indexes=[{'columns': ['account_id', 'week_start']}, {'columns': ['week_start']}]) }}

with

as_of as (
    select ({{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_date
),

accounts as (
    select * from {{ ref('int_product_accounts') }}
),

user_days as (
    select * from {{ ref('int_product_user_days') }}
),

event_days as (
    select * from {{ ref('int_product_account_event_days') }}
),

subscriptions as (
    select * from {{ ref('billing_subscriptions') }}
),

subscription_items as (
    select * from {{ ref('stg_stripe__subscription_items') }}
),

-- seats bought: the largest quantity on the customer's live subscription items (per-seat plans)
stripe_seats as (
    select
        subscriptions.customer_id,
        max(subscription_items.quantity) as seats
    from subscription_items
    inner join subscriptions
        on subscription_items.subscription_id = subscriptions.subscription_id
    where subscriptions.status in ('active', 'trialing', 'past_due')
    group by subscriptions.customer_id
),

user_weeks as (
    select
        account_id,
        date_trunc('week', activity_date)::date as week_start,
        count(distinct user_id) filter (where user_id <> '') as active_users,
        count(distinct activity_date) as active_days,
        sum(events)::bigint as events,
        sum(key_actions)::bigint as key_actions
    from user_days
    group by account_id, date_trunc('week', activity_date)::date
),

feature_weeks as (
    select
        account_id,
        date_trunc('week', activity_date)::date as week_start,
        count(distinct event_name) filter (where is_feature) as features_used
    from event_days
    group by account_id, date_trunc('week', activity_date)::date
),

spine as (
    select
        accounts.account_id,
        accounts.customer_id,
        weeks.week_start::date as week_start
    from accounts
    cross join as_of
    cross join lateral generate_series(
        date_trunc('week', accounts.first_seen_date),
        date_trunc('week', as_of.as_of_date),
        interval '1 week'
    ) as weeks (week_start)
),

weekly as (
    select
        spine.account_id,
        spine.customer_id,
        spine.week_start,
        coalesce(user_weeks.active_users, 0) as active_users,
        coalesce(user_weeks.active_days, 0) as active_days,
        coalesce(user_weeks.events, 0) as events,
        coalesce(user_weeks.key_actions, 0) as key_actions,
        coalesce(feature_weeks.features_used, 0) as features_used
    from spine
    left join user_weeks
        on spine.account_id = user_weeks.account_id
        and spine.week_start = user_weeks.week_start
    left join feature_weeks
        on spine.account_id = feature_weeks.account_id
        and spine.week_start = feature_weeks.week_start
),

with_baseline as (
    select
        weekly.*,
        avg(weekly.events) over (
            partition by weekly.account_id order by weekly.week_start
            rows between {{ var('health_baseline_weeks') }} preceding and 1 preceding
        ) as expected_events,
        max(weekly.active_users) over (
            partition by weekly.account_id order by weekly.week_start rows between 11 preceding and current row
        ) as peak_active_users_12_weeks
    from weekly
),

scored as (
    select
        with_baseline.*,
        greatest(coalesce(stripe_seats.seats, 0), with_baseline.peak_active_users_12_weeks) as seats,
        case
            when coalesce(with_baseline.expected_events, 0) = 0 then
                case when with_baseline.events > 0 then 50 else 0 end
            else 50 * least(1, with_baseline.events / with_baseline.expected_events)
        end as activity_score,
        25 * least(1, with_baseline.features_used::numeric / {{ var('health_breadth_target') }}) as breadth_score
    from with_baseline
    left join stripe_seats
        on with_baseline.customer_id = stripe_seats.customer_id
),

final as (
    select
        scored.account_id,
        scored.customer_id,
        scored.week_start,
        scored.week_start + 7 <= as_of.as_of_date as is_complete_week,
        scored.active_users,
        scored.active_days,
        scored.events,
        scored.key_actions,
        scored.features_used,
        round(scored.expected_events, 2) as expected_events,
        scored.seats,
        round(scored.activity_score, 2) as activity_score,
        round(scored.breadth_score, 2) as breadth_score,
        round(case when scored.seats = 0 then 0 else 25 * least(1, scored.active_users::numeric / scored.seats) end, 2)
            as seat_score,
        round(
            scored.activity_score + scored.breadth_score
            + case when scored.seats = 0 then 0 else 25 * least(1, scored.active_users::numeric / scored.seats) end
        )::integer as health_score
    from scored
    cross join as_of
)

select
    final.*,
    {{ health_band('final.health_score') }} as health_band
from final
