-- Blocking: every churn has exactly one cause, and the causes add up to the waterfall's churn (METRICS.md
-- "Voluntary and involuntary churn"; assert_logo_churn_causes_add_up checks the KPIs').
{{ config(severity='error') }}

with

waterfall as (
    select * from {{ ref('mrr_monthly') }}
),

-- the engine's tables, which mrr_monthly reads too (mrr_movements joins them the same way)
movements as (
    select
        movements.movement_month,
        movements.movement_type,
        churn_causes.churn_type
    from {{ ref('int_customer_mrr_movements') }} as movements
    left join {{ ref('int_customer_churn_causes') }} as churn_causes
        on movements.customer_id = churn_causes.customer_id
        and movements.movement_date = churn_causes.movement_date
),

untyped_churns as (
    select
        movement_month as month,
        'a churn without a cause, or a cause on another movement' as problem
    from movements
    where (movement_type = 'churn') <> (churn_type is not null)
),

waterfall_gaps as (
    select
        month,
        'the waterfall''s churn by cause does not add up' as problem
    from waterfall
    where churned_mrr <> voluntary_churned_mrr + involuntary_churned_mrr
        or churned_customers <> voluntary_churned_customers + involuntary_churned_customers
),

final as (
    select * from untyped_churns
    union all
    select * from waterfall_gaps
)

select * from final
