-- Blocking: per customer, each movement starts from the level the previous one ended at
-- (in the customer's currency), and the type matches the levels.
{{ config(severity='error') }}

with

movements as (
    select * from {{ ref('mrr_movements') }}
),

checked as (
    select
        *,
        coalesce(lag(mrr_after_local) over (partition by customer_id order by movement_date), 0) as previous_after
    from movements
)

select * from checked -- noqa: AM04
where mrr_before_local <> previous_after
    or mrr_after_local - mrr_before_local <> mrr_change_local
    or (movement_type = 'churn' and mrr_after_local <> 0)
    or (movement_type in ('new', 'reactivation') and mrr_before_local <> 0)
    or (movement_type = 'expansion' and mrr_change_local <= 0)
    or (movement_type = 'contraction' and (mrr_change_local >= 0 or mrr_after_local = 0))
