-- Blocking: the waterfall's churn by cause adds up to its churn (METRICS.md "Voluntary and involuntary churn";
-- assert_every_churn_has_a_cause checks the movements, assert_logo_churn_causes_add_up the KPIs). Each of these
-- reads one model: a build of a part of the project (--select) runs a test whose model it builds.
{{ config(severity='error') }}

with

waterfall as (
    select * from {{ ref('mrr_monthly') }}
),

final as (
    select
        month,
        churned_mrr,
        voluntary_churned_mrr,
        involuntary_churned_mrr,
        churned_customers,
        voluntary_churned_customers,
        involuntary_churned_customers
    from waterfall
    where churned_mrr <> voluntary_churned_mrr + involuntary_churned_mrr
        or churned_customers <> voluntary_churned_customers + involuntary_churned_customers
)

select * from final
