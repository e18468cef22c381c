-- Each customer's MRR at the end of every month in which it paid (and the month it churned,
-- with 0). The current month shows MRR as of today. Values at the month-end rate.
-- A view of int_customer_mrr_monthly, which the engine keeps up to date incrementally (and indexes
-- on customer_id, month: one customer's history is fast).
{{ config(materialized='view') }}

with

customer_months as (
    select * from {{ ref('int_customer_mrr_monthly') }}
),

as_of as (
    select ({{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_date
),

final as (
    select
        customer_months.customer_id,
        customer_months.billing_account,
        customer_months.month,
        -- the day whose MRR the row shows: the month's last day, or the build's today
        least((customer_months.month + interval '1 month - 1 day')::date, as_of.as_of_date) as snapshot_date,
        customer_months.mrr,
        customer_months.currency,
        customer_months.mrr_local,
        customer_months.country,
        customer_months.acquisition_channel,
        customer_months.mrr_band,
        -- the running month is as of today (METRICS.md "Complete months")
        customer_months.month < date_trunc('month', as_of.as_of_date)::date as is_complete_month
    from customer_months
    cross join as_of
)

select * from final
