-- Trials by the month they started (a cohort: a late conversion updates its trial month)
-- (METRICS.md "Trial conversion").
with

subscriptions as (
    select * from {{ ref('billing_subscriptions') }}
),

changes as (
    select * from {{ ref('int_subscription_prices_mrr_changes') }}
),

trials as (
    select
        subscription_id,
        customer_id,
        trial_started_at,
        date_trunc('month', trial_started_at at time zone 'UTC')::date as trial_month
    from subscriptions
    where trial_started_at is not null
),

first_paid as (
    select
        subscription_id,
        min(changed_at) as first_paid_at
    from changes
    where mrr_change_local > 0
    group by subscription_id
),

joined as (
    select
        trials.*,
        first_paid.first_paid_at,
        extract(epoch from first_paid.first_paid_at - trials.trial_started_at) / 86400 as days_to_convert
    from trials
    left join first_paid
        on trials.subscription_id = first_paid.subscription_id
),

final as (
    select
        trial_month,
        count(*) as trials_started,
        count(*) filter (where days_to_convert <= 30) as converted_within_30_days,
        count(first_paid_at) as converted_ever,
        round(count(*) filter (where days_to_convert <= 30)::numeric / count(*), 4) as conversion_rate_30_days,
        round(count(first_paid_at)::numeric / count(*), 4) as conversion_rate_ever,
        round((percentile_cont(0.5) within group (order by days_to_convert))::numeric, 1) as median_days_to_convert
    from joined
    group by trial_month
)

select * from final
