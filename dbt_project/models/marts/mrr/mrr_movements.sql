-- One row per customer per day on which its MRR changed (METRICS.md "Movements").
-- A view of int_customer_mrr_movements, which the engine keeps up to date incrementally (and indexes on
-- customer_id, movement_date: one customer's history is fast), with the churn's cause from
-- int_customer_churn_causes (METRICS.md "Voluntary and involuntary churn").
{{ config(materialized='view') }}

with

movements as (
    select * from {{ ref('int_customer_mrr_movements') }}
),

churn_causes as (
    select * from {{ ref('int_customer_churn_causes') }}
),

final as (
    select
        movements.customer_id,
        movements.movement_date,
        movements.movement_month,
        movements.movement_type,
        movements.mrr_before,
        movements.mrr_after,
        movements.mrr_change,
        movements.currency,
        movements.mrr_before_local,
        movements.mrr_after_local,
        movements.mrr_change_local,
        movements.fx_rate,
        churn_causes.churn_type
    from movements
    left join churn_causes
        on movements.customer_id = churn_causes.customer_id
        and movements.movement_date = churn_causes.movement_date
)

select * from final
