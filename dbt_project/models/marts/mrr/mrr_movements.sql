-- One row per customer per day on which its MRR changed (METRICS.md "Movements").
-- A view of int_customer_mrr_movements, which the engine keeps up to date incrementally (and indexes on
-- customer_id, movement_date: one customer's history is fast).
{{ config(materialized='view') }}

with

movements as (
    select * from {{ ref('int_customer_mrr_movements') }}
),

final as (
    select
        customer_id,
        movement_date,
        movement_month,
        movement_type,
        mrr_before,
        mrr_after,
        mrr_change,
        currency,
        mrr_before_local,
        mrr_after_local,
        mrr_change_local,
        fx_rate
    from movements
)

select * from final
