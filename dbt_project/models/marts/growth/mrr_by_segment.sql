-- MRR, movements and churn per month and segment (METRICS.md "Segments"): for each dimension, the
-- segments of a month add up to the month's total in mrr_monthly (blocking test assert_segments_add_up).
-- Computed month by month in int_segment_mrr_monthly (incremental); published here whole.

with

segment_months as (
    select * from {{ ref('int_segment_mrr_monthly') }}
),

final as (
    select
        month,
        dimension,
        segment,
        starting_mrr,
        new_mrr,
        expansion_mrr,
        reactivation_mrr,
        contraction_mrr,
        churned_mrr,
        mrr,
        starting_customers,
        new_customers,
        reactivated_customers,
        churned_customers,
        customers,
        logo_churn_rate,
        revenue_churn_rate
    from segment_months
)

select * from final
