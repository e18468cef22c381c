-- Cohorts by month of first MRR: how many customers and how much MRR each cohort keeps
-- (METRICS.md "Cohort retention"). One row per cohort and month since start, for a triangle.
with

-- not materialized: each use can then read the table's (customer_id, month) index
customer_months as not materialized (
    select * from {{ ref('customer_mrr_monthly') }}
),

movements as (
    select * from {{ ref('mrr_movements') }}
),

as_of as (
    select date_trunc('month', {{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_month
),

cohorts as (
    select
        customer_id,
        min(movement_month) as cohort_month
    from movements
    where movement_type = 'new'
    group by customer_id
),

starting as (
    select
        cohorts.customer_id,
        cohorts.cohort_month,
        coalesce(customer_months.mrr, 0) as starting_mrr
    from cohorts
    left join customer_months
        on cohorts.customer_id = customer_months.customer_id
        and cohorts.cohort_month = customer_months.month
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
        0,
        ((extract(year from as_of.as_of_month) - extract(year from cohort_sizes.cohort_month)) * 12
            + extract(month from as_of.as_of_month) - extract(month from cohort_sizes.cohort_month))::int
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
        and customer_months.month >= starting.cohort_month
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
