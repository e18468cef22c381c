-- Blocking: every churn movement has a cause, and no other movement has one (METRICS.md "Voluntary and
-- involuntary churn").
{{ config(severity='error') }}

with

movements as (
    select * from {{ ref('mrr_movements') }}
),

final as (
    select
        customer_id,
        movement_date,
        movement_type,
        churn_type
    from movements
    where (movement_type = 'churn') <> (churn_type is not null)
)

select * from final
