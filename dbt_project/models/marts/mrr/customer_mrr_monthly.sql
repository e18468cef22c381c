-- Each customer's MRR at the end of every month in which it paid (and the month it churned,
-- with 0). The current month shows MRR as of today. Values at the month-end rate.
-- A view of int_customer_mrr_monthly, which the engine keeps up to date incrementally (and indexes
-- on customer_id, month: one customer's history is fast).
{{ config(materialized='view') }}

with

customer_months as (
    select * from {{ ref('int_customer_mrr_monthly') }}
),

final as (
    select
        customer_id,
        month,
        snapshot_date,
        mrr,
        currency,
        mrr_local,
        country,
        acquisition_channel,
        mrr_band
    from customer_months
)

select * from final
