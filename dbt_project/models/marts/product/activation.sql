-- Per signup month: the share of accounts that did every activation action within
-- activation_days of signing up, and the trial-to-paid conversion of activated accounts vs the
-- others (METRICS.md "Activation"). Only accounts that signed up after product events begin.
with

accounts as (
    select * from {{ ref('int_product_accounts') }}
),

event_days as (
    select * from {{ ref('int_product_account_event_days') }}
),

customers as (
    select * from {{ ref('billing_customers') }}
),

subscriptions as (
    select * from {{ ref('billing_subscriptions') }}
),

lifetime as (
    select * from {{ ref('customer_lifetime') }}
),

history_start as (
    select min(first_seen_date) as first_event_date
    from accounts
),

signups as (
    select
        accounts.account_id,
        accounts.customer_id,
        coalesce((customers.created_at at time zone 'UTC')::date, accounts.first_seen_date) as signup_date
    from accounts
    left join customers
        on accounts.customer_id = customers.customer_id
),

actions_done as (
    select
        signups.account_id,
        count(distinct event_days.event_name) as actions_done
    from signups
    inner join event_days
        on signups.account_id = event_days.account_id
        and signups.signup_date <= event_days.activity_date
        and event_days.activity_date < signups.signup_date + {{ var('activation_days') }}
    where event_days.event_name in {{ sql_list(var('activation_actions')) }}
    group by signups.account_id
),

trials as (
    select distinct customer_id
    from subscriptions
    where trial_started_at is not null
),

accounts_scored as (
    select
        signups.account_id,
        date_trunc('month', signups.signup_date)::date as signup_month,
        coalesce(actions_done.actions_done, 0) >= {{ var('activation_actions') | length }} as is_activated,
        trials.customer_id is not null as had_trial,
        lifetime.first_paid_date is not null as has_paid
    from signups
    cross join history_start
    left join actions_done
        on signups.account_id = actions_done.account_id
    left join trials
        on signups.customer_id = trials.customer_id
    left join lifetime
        on signups.customer_id = lifetime.customer_id
    where signups.signup_date >= history_start.first_event_date
),

final as (
    select
        signup_month,
        count(*) as accounts,
        count(*) filter (where is_activated) as activated_accounts,
        round(count(*) filter (where is_activated)::numeric / count(*), 4) as activation_rate,
        count(*) filter (where had_trial and is_activated) as activated_trials,
        count(*) filter (where had_trial and is_activated and has_paid) as activated_trials_converted,
        round(
            count(*) filter (where had_trial and is_activated and has_paid)::numeric
            / nullif(count(*) filter (where had_trial and is_activated), 0),
            4
        ) as activated_trial_conversion_rate,
        count(*) filter (where had_trial and not is_activated) as other_trials,
        count(*) filter (where had_trial and not is_activated and has_paid) as other_trials_converted,
        round(
            count(*) filter (where had_trial and not is_activated and has_paid)::numeric
            / nullif(count(*) filter (where had_trial and not is_activated), 0),
            4
        ) as other_trial_conversion_rate
    from accounts_scored
    group by signup_month
)

select * from final
