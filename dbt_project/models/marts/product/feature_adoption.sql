-- Per feature: how many paying accounts use it now, and whether the accounts that used it in
-- their first 90 days of paying were still paying 6 and 12 months later more often than the
-- others (METRICS.md "Feature adoption").
with

as_of as (
    select ({{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_date
),

accounts as (
    select * from {{ ref('int_product_accounts') }}
    where customer_id is not null
),

event_days as (
    select * from {{ ref('int_product_account_event_days') }}
    where is_feature
),

current_mrr as (
    select * from {{ ref('customer_mrr_current') }}
),

lifetime as (
    select * from {{ ref('customer_lifetime') }}
),

customer_months as (
    select * from {{ ref('customer_mrr_monthly') }}
),

history_start as (
    select min(first_seen_date) as first_event_date
    from {{ ref('int_product_accounts') }}
),

features as (
    select distinct event_name as feature
    from event_days
),

paying_accounts as (
    select accounts.account_id
    from accounts
    inner join current_mrr
        on accounts.customer_id = current_mrr.customer_id
    where current_mrr.is_paying
),

recent_use as (
    select distinct
        event_days.event_name as feature,
        event_days.account_id
    from event_days
    cross join as_of
    where event_days.activity_date > as_of.as_of_date - 28
),

-- accounts that started paying after events begin, with 6 / 12 months behind them
cohort as (
    select
        accounts.account_id,
        lifetime.first_paid_date,
        (lifetime.first_paid_date + interval '6 months')::date <= as_of.as_of_date as has_6_months,
        (lifetime.first_paid_date + interval '12 months')::date <= as_of.as_of_date as has_12_months,
        exists(
            select 1 from customer_months
            where customer_months.customer_id = accounts.customer_id
                and customer_months.month = date_trunc('month', lifetime.first_paid_date + interval '6 months')::date
                and customer_months.mrr > 0
        ) as retained_6_months,
        exists(
            select 1 from customer_months
            where customer_months.customer_id = accounts.customer_id
                and customer_months.month = date_trunc('month', lifetime.first_paid_date + interval '12 months')::date
                and customer_months.mrr > 0
        ) as retained_12_months
    from accounts
    inner join lifetime
        on accounts.customer_id = lifetime.customer_id
    cross join as_of
    cross join history_start
    where lifetime.first_paid_date >= history_start.first_event_date
),

early_use as (
    select distinct
        event_days.event_name as feature,
        cohort.account_id
    from cohort
    inner join event_days
        on cohort.account_id = event_days.account_id
        and cohort.first_paid_date <= event_days.activity_date
        and event_days.activity_date < cohort.first_paid_date + 90
),

cohort_by_feature as (
    select
        features.feature,
        cohort.*,
        early_use.account_id is not null as is_user
    from features
    cross join cohort
    left join early_use
        on features.feature = early_use.feature
        and cohort.account_id = early_use.account_id
),

retention as (
    select
        feature,
        count(*) filter (where has_6_months and is_user) as users_6_months,
        count(*) filter (where has_6_months and is_user and retained_6_months) as users_retained_6_months,
        count(*) filter (where has_6_months and not is_user) as non_users_6_months,
        count(*) filter (where has_6_months and not is_user and retained_6_months) as non_users_retained_6_months,
        count(*) filter (where has_12_months and is_user) as users_12_months,
        count(*) filter (where has_12_months and is_user and retained_12_months) as users_retained_12_months,
        count(*) filter (where has_12_months and not is_user) as non_users_12_months,
        count(*) filter (where has_12_months and not is_user and retained_12_months) as non_users_retained_12_months
    from cohort_by_feature
    group by feature
),

adoption as (
    select
        features.feature,
        (select count(*) from paying_accounts) as paying_accounts,
        count(paying_accounts.account_id) as paying_accounts_using
    from features
    left join recent_use
        on features.feature = recent_use.feature
    -- the same name as in the count above: a subquery of its own, not a second alias in this query
    left join paying_accounts -- noqa: AL04
        on recent_use.account_id = paying_accounts.account_id
    group by features.feature
),

final as (
    select
        adoption.feature,
        adoption.paying_accounts,
        adoption.paying_accounts_using,
        round(adoption.paying_accounts_using::numeric / nullif(adoption.paying_accounts, 0), 4) as adoption_rate,
        coalesce(retention.users_6_months, 0) as users_6_months,
        round(retention.users_retained_6_months::numeric / nullif(retention.users_6_months, 0), 4)
            as users_retention_6_months,
        coalesce(retention.non_users_6_months, 0) as non_users_6_months,
        round(retention.non_users_retained_6_months::numeric / nullif(retention.non_users_6_months, 0), 4)
            as non_users_retention_6_months,
        coalesce(retention.users_12_months, 0) as users_12_months,
        round(retention.users_retained_12_months::numeric / nullif(retention.users_12_months, 0), 4)
            as users_retention_12_months,
        coalesce(retention.non_users_12_months, 0) as non_users_12_months,
        round(retention.non_users_retained_12_months::numeric / nullif(retention.non_users_12_months, 0), 4)
            as non_users_retention_12_months
    from adoption
    left join retention
        on adoption.feature = retention.feature
)

select * from final
