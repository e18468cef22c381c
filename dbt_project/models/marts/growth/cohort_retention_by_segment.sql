-- cohort_retention split by segment (METRICS.md "Segments"): customers grouped by the month of their
-- first MRR and by their segment at the end of that month (a cohort's members never change segment
-- here); for each month since, how many still pay and how much MRR the group keeps.
-- Computed month by month in int_cohort_segment_retention (incremental); published here whole.

with

retention as (
    select * from {{ ref('int_cohort_segment_retention') }}
),

final as (
    select
        cohort_month,
        dimension,
        segment,
        months_since_start,
        month,
        cohort_customers,
        active_customers,
        logo_retention,
        cohort_starting_mrr,
        mrr,
        revenue_retention,
        gross_revenue_retention
    from retention
)

select * from final
