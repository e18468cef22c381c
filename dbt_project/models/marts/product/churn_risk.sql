-- Paying customers flagged by at least one rule of METRICS.md "Churn risk", with the MRR at
-- risk. One row per customer (its product accounts taken together); a paying customer with no
-- product activity at all is flagged by the key-action and admin rules.
with

as_of as (
    select ({{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_date
),

current_mrr as (
    select * from {{ ref('customer_mrr_current') }}
    where is_paying
),

customers as (
    select * from {{ ref('billing_customers') }}
),

accounts as (
    select * from {{ ref('int_product_accounts') }}
    where customer_id is not null
),

user_days as (
    select * from {{ ref('int_product_user_days') }}
),

weekly as (
    select * from {{ ref('account_engagement_weekly') }}
    where is_complete_week and customer_id is not null
),

health as (
    select * from {{ ref('account_health') }}
    where customer_id is not null
),

-- the last two complete weeks, per customer
week_events as (
    select
        customer_id,
        week_start,
        sum(events)::bigint as events
    from weekly
    group by customer_id, week_start
),

last_two_weeks as (
    select
        customer_id,
        max(events) filter (where rank = 1) as events_last_week,
        max(events) filter (where rank = 2) as events_week_before
    from (
        select
            week_events.*,
            row_number() over (partition by week_events.customer_id order by week_events.week_start desc) as rank
        from week_events
    ) as ranked
    where rank <= 2
    group by customer_id
),

users as (
    select
        accounts.customer_id,
        user_days.account_id,
        user_days.user_id,
        bool_or(user_days.has_admin_event) as is_flagged_admin,
        min(user_days.first_event_at) as first_event_at,
        max(user_days.activity_date) as last_active_date,
        sum(user_days.key_actions) filter (
            where user_days.activity_date > as_of.as_of_date - {{ var('churn_risk_quiet_days') }}
        ) as recent_key_actions
    from user_days
    inner join accounts
        on user_days.account_id = accounts.account_id
    cross join as_of
    where user_days.user_id <> ''
    group by accounts.customer_id, user_days.account_id, user_days.user_id
),

-- admins: users with an admin event; an account without any has its first user as admin
admins as (
    select
        users.*,
        users.is_flagged_admin
        or (
            not bool_or(users.is_flagged_admin) over (partition by users.account_id)
            and users.first_event_at = min(users.first_event_at) over (partition by users.account_id)
        ) as is_admin
    from users
),

activity as (
    select
        customer_id,
        coalesce(sum(recent_key_actions), 0)::bigint as key_actions_last_14_days,
        max(last_active_date) filter (where is_admin) as admin_last_active_date
    from admins
    group by customer_id
),

flags as (
    select
        current_mrr.customer_id,
        current_mrr.mrr as mrr_at_risk,
        coalesce(last_two_weeks.events_last_week, 0) as events_last_week,
        coalesce(last_two_weeks.events_week_before, 0) as events_week_before,
        coalesce(activity.key_actions_last_14_days, 0) as key_actions_last_14_days,
        activity.admin_last_active_date,
        customers.default_card_expires_on,
        coalesce(last_two_weeks.events_week_before, 0) >= {{ var('churn_risk_min_weekly_events') }}
        and coalesce(last_two_weeks.events_last_week, 0)
        <= last_two_weeks.events_week_before * (1 - {{ var('churn_risk_usage_drop') }}) as is_usage_drop,
        coalesce(activity.key_actions_last_14_days, 0) = 0 as is_no_recent_key_action,
        coalesce(activity.admin_last_active_date <= as_of.as_of_date - {{ var('churn_risk_quiet_days') }}, true)
            as is_admin_inactive,
        coalesce(
            customers.default_card_expires_on < as_of.as_of_date + {{ var('card_expiry_days') }}, false
        ) as is_card_expiring
    from current_mrr
    cross join as_of
    left join last_two_weeks
        on current_mrr.customer_id = last_two_weeks.customer_id
    left join activity
        on current_mrr.customer_id = activity.customer_id
    left join customers
        on current_mrr.customer_id = customers.customer_id
),

lowest_health as (
    select
        customer_id,
        min(health_score) as health_score
    from health
    group by customer_id
),

final as (
    select
        flags.customer_id,
        flags.mrr_at_risk,
        lowest_health.health_score,
        {{ health_band('lowest_health.health_score') }} as health_band,
        flags.is_usage_drop,
        flags.is_no_recent_key_action,
        flags.is_admin_inactive,
        flags.is_card_expiring,
        (
            flags.is_usage_drop::int + flags.is_no_recent_key_action::int + flags.is_admin_inactive::int
            + flags.is_card_expiring::int
        ) as risk_flags,
        concat_ws(
            ', ',
            case
                when flags.is_usage_drop then
                    'usage down {{ (var("churn_risk_usage_drop") * 100) | round | int }}%+ week over week'
            end,
            case when flags.is_no_recent_key_action then 'no key action in {{ var("churn_risk_quiet_days") }} days' end,
            case when flags.is_admin_inactive then 'admin inactive {{ var("churn_risk_quiet_days") }} days' end,
            case when flags.is_card_expiring then 'card expiring within {{ var("card_expiry_days") }} days' end
        ) as risk_reasons,
        flags.events_last_week,
        flags.events_week_before,
        flags.key_actions_last_14_days,
        flags.admin_last_active_date,
        flags.default_card_expires_on
    from flags
    left join lowest_health
        on flags.customer_id = lowest_health.customer_id
    where flags.is_usage_drop or flags.is_no_recent_key_action or flags.is_admin_inactive or flags.is_card_expiring
)

select * from final
