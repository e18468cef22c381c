-- One row per product account: its health (METRICS.md "Account health") in the last complete
-- week, the change over four weeks, and the MRR at stake. Accounts first seen this week have
-- no complete week yet: their scores are null.
with

weekly as (
    select * from {{ ref('account_engagement_weekly') }}
),

accounts as (
    select * from {{ ref('int_product_accounts') }}
),

current_mrr as (
    select * from {{ ref('customer_mrr_current') }}
),

complete_weeks as (
    select
        weekly.*,
        lag(weekly.health_score, 4) over (
            partition by weekly.account_id order by weekly.week_start
        ) as health_score_4_weeks_before
    from weekly
    where weekly.is_complete_week
),

latest as (
    select distinct on (account_id) *
    from complete_weeks
    order by account_id asc, week_start desc
),

final as (
    select
        accounts.account_id,
        accounts.customer_id,
        accounts.mapped_by,
        latest.week_start as scored_week_start,
        latest.events,
        latest.expected_events,
        latest.active_users,
        latest.seats,
        latest.features_used,
        latest.activity_score,
        latest.breadth_score,
        latest.seat_score,
        latest.health_score,
        latest.health_band,
        latest.health_score - latest.health_score_4_weeks_before as health_change_4_weeks,
        accounts.first_seen_date,
        accounts.last_seen_date,
        coalesce(current_mrr.is_paying, false) as is_paying,
        coalesce(current_mrr.mrr, 0) as current_mrr
    from accounts
    left join latest
        on accounts.account_id = latest.account_id
    left join current_mrr
        on accounts.customer_id = current_mrr.customer_id
)

select * from final
