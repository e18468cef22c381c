-- Cohorts by month of first MRR: how many customers and how much MRR each cohort keeps
-- (METRICS.md "Cohort retention"). One row per cohort and month since start, for a triangle.
-- One population for logos and revenue: every customer whose first MRR fell in the cohort month, with the
-- MRR it started at (its first `new` movement, at the rate of the month's end), so month 0 of both reads
-- the same customers (one who joined and left within the month counts in both bases, and 0 in both).
with

-- not materialized: each use can then read the table's (customer_id, month) index
customer_months as not materialized (
    select * from {{ ref('customer_mrr_monthly') }}
),

movements as (
    select * from {{ ref('mrr_movements') }}
),

as_of as (
    select
        ({{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_date,
        date_trunc('month', {{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_month
),

cohorts as (
    select distinct on (customer_id)
        customer_id,
        movement_month as cohort_month,
        currency,
        mrr_after,
        mrr_after_local
    from movements
    -- a customer billed in a currency without a rate is left out (METRICS.md "Currencies")
    where movement_type = 'new' and mrr_change is not null
    order by customer_id, movement_date
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

starting as (
    select
        cohorts.customer_id,
        cohorts.cohort_month,
        coalesce(
            round(cohorts.mrr_after_local * {{ fx_rate('cohorts.currency', 'fx.rate') }}, 4),
            cohorts.mrr_after
        ) as starting_mrr
    from cohorts
    cross join as_of
    -- the cohort month's snapshot day (customer_mrr_monthly.snapshot_date: its last day, or today)
    left join fx
        on cohorts.currency = fx.currency
        and least((cohorts.cohort_month + interval '1 month - 1 day')::date, as_of.as_of_date) = fx.rate_date
),

cohort_sizes as (
    select
        cohort_month,
        count(*) as cohort_customers,
        sum(starting_mrr) as cohort_starting_mrr
    from starting
    group by cohort_month
),

spine as (
    select
        cohort_sizes.*,
        offsets.months_since_start,
        (cohort_sizes.cohort_month + offsets.months_since_start * interval '1 month')::date as month
    from cohort_sizes
    cross join as_of
    cross join lateral generate_series(
        0, {{ months_between('cohort_sizes.cohort_month', 'as_of.as_of_month') }}
    ) as offsets (months_since_start)
),

activity as (
    select
        starting.cohort_month,
        customer_months.month,
        count(*) filter (where customer_months.mrr > 0) as active_customers,
        sum(customer_months.mrr) as mrr,
        sum(least(customer_months.mrr, starting.starting_mrr)) as capped_mrr
    from starting
    inner join customer_months
        on starting.customer_id = customer_months.customer_id
        and starting.cohort_month <= customer_months.month
    group by starting.cohort_month, customer_months.month
),

final as (
    select
        spine.cohort_month,
        spine.months_since_start,
        spine.month,
        spine.cohort_customers,
        coalesce(activity.active_customers, 0) as active_customers,
        round(coalesce(activity.active_customers, 0)::numeric / spine.cohort_customers, 4) as logo_retention,
        spine.cohort_starting_mrr,
        coalesce(activity.mrr, 0) as mrr,
        round(coalesce(activity.mrr, 0) / nullif(spine.cohort_starting_mrr, 0), 4) as revenue_retention,
        round(coalesce(activity.capped_mrr, 0) / nullif(spine.cohort_starting_mrr, 0), 4) as gross_revenue_retention,
        -- the running month is as of today (METRICS.md "Complete months")
        spine.month < as_of.as_of_month as is_complete_month
    from spine
    cross join as_of
    left join activity
        on spine.cohort_month = activity.cohort_month
        and spine.month = activity.month
)

select * from final
