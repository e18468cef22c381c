-- Every customer that ever paid, with its MRR today and what is scheduled to happen to it
-- (METRICS.md "Pending churn"). A view of int_customer_mrr_current, which the engine keeps up to date
-- incrementally.
{{ config(materialized='view') }}

with

current_mrr as (
    select * from {{ ref('int_customer_mrr_current') }}
),

final as (
    select
        customer_id,
        billing_account,
        email,
        mrr,
        currency,
        mrr_local,
        pending_churn_mrr,
        is_paying,
        paying_subscriptions,
        is_paused,
        has_scheduled_cancellation,
        scheduled_cancel_at,
        country,
        acquisition_channel,
        first_paid_date,
        last_movement_date
    from current_mrr
)

select * from final
