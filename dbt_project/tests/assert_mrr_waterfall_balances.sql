-- Blocking: every month's waterfall adds up exactly, and each month starts where the last ended.
{{ config(severity='error') }}

with

waterfall as (
    select * from {{ ref('mrr_monthly') }}
),

checked as (
    select
        month,
        ending_mrr - (
            starting_mrr + new_mrr + expansion_mrr + reactivation_mrr
            - contraction_mrr - churned_mrr + fx_impact
        ) as identity_gap,
        starting_mrr - coalesce(lag(ending_mrr) over (order by month), 0) as continuity_gap,
        ending_customers - (starting_customers + new_customers + reactivated_customers - churned_customers)
            as customer_gap
    from waterfall
)

select * from checked
where identity_gap <> 0 or continuity_gap <> 0 or customer_gap <> 0
