-- Why each churn happened (METRICS.md "Voluntary and involuntary churn"): one row per churn movement of
-- int_customer_mrr_movements, `voluntary` or `involuntary`. A churn is involuntary when every subscription
-- whose MRR fell that day fell because it was not paid:
--   at an end point, Stripe canceled it for non-payment (cancellation_details.reason payment_failed or
--   payment_disputed: its dunning settings cancel after the last retry, or a dispute);
--   at a lapse point (past_due_grace_days passed, or marked uncollectible) or a cycle point that stopped
--   counting (an unpaid subscription's invoices stay drafts), the last invoice due by then is unpaid and a
--   payment of it was attempted (attempt_count > 0; an invoice sent for manual payment counts as attempted).
-- Anything else is voluntary: a cancellation, a paused collection (its invoices are never attempted), a
-- contract's end, a void cycle invoice, a downgrade to nothing.
-- Incremental: only the customers int_mrr_engine_batches lists since the last build are recomputed.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    indexes=[{'columns': ['customer_id', 'movement_date']}, {'columns': ['engine_batch_at']}],
    pre_hook="{{ mrr_engine_delete(ref('int_customer_mrr_movements'), 'customer_id') }}",
) }}
{%- set scope = mrr_engine_scope(ref('int_customer_mrr_movements')) %}

with

churns as (
    select
        customer_id,
        movement_date
    from {{ ref('int_customer_mrr_movements') }}
    where movement_type = 'churn'
    {% if not scope.full -%}
    and customer_id in ({{ mrr_engine_changed(scope, 'customer_id') }})
    {%- endif %}
),

changes as (
    select * from {{ ref('int_subscription_prices_mrr_changes') }}
    {% if not scope.full -%}
    where customer_id in ({{ mrr_engine_changed(scope, 'customer_id') }})
    {%- endif %}
),

-- the instants of a churn day at which a subscription's MRR went down
falls as (
    select
        changes.customer_id,
        changes.subscription_id,
        changes.changed_at as fell_at,
        churns.movement_date
    from changes
    inner join churns
        on changes.customer_id = churns.customer_id
        and (changes.changed_at at time zone 'UTC')::date = churns.movement_date
    group by changes.customer_id, changes.subscription_id, changes.changed_at, churns.movement_date
    having sum(changes.mrr_change_local) < 0
),

-- the kind of absolute point it fell at (at one instant the later kind wins: 1 cycle, 3 lapse, 4 end)
fall_points as (
    select
        points.subscription_id,
        points.point_at,
        max(points.priority) as priority
    from {{ ref('int_subscription_mrr_points') }} as points
    inner join falls
        on points.subscription_id = falls.subscription_id
        and points.point_at = falls.fell_at
    where points.is_absolute
    group by points.subscription_id, points.point_at
),

-- the last invoice due by then (finalized, not void, something to pay)
last_due_invoices as (
    select distinct on (falls.subscription_id, falls.fell_at)
        falls.subscription_id,
        falls.fell_at,
        invoices.status,
        invoices.attempt_count,
        invoices.collection_method
    from falls
    inner join {{ ref('stg_stripe__invoices') }} as invoices
        on falls.subscription_id = invoices.subscription_id
        and falls.fell_at >= invoices.created_at
    where invoices.status in ('paid', 'open', 'uncollectible') and invoices.amount_due_cents > 0
    order by falls.subscription_id asc, falls.fell_at asc, invoices.created_at desc, invoices.invoice_id desc
),

subscriptions as (
    select
        subscription_id,
        cancellation_reason
    from {{ ref('billing_subscriptions') }}
),

fall_facts as (
    select
        falls.customer_id,
        falls.movement_date,
        falls.subscription_id,
        fall_points.priority,
        coalesce(subscriptions.cancellation_reason in ('payment_failed', 'payment_disputed'), false)
            as is_canceled_for_non_payment,
        coalesce(last_due_invoices.status in ('open', 'uncollectible'), false)
        and coalesce(last_due_invoices.attempt_count > 0 or last_due_invoices.collection_method = 'send_invoice', false)
            as is_unpaid_after_an_attempt
    from falls
    left join fall_points
        on falls.subscription_id = fall_points.subscription_id
        and falls.fell_at = fall_points.point_at
    left join last_due_invoices
        on falls.subscription_id = last_due_invoices.subscription_id
        and falls.fell_at = last_due_invoices.fell_at
    left join subscriptions
        on falls.subscription_id = subscriptions.subscription_id
),

causes as (
    select
        customer_id,
        movement_date,
        subscription_id,
        case
            when priority = 4 then is_canceled_for_non_payment
            when priority in (1, 3) then is_unpaid_after_an_attempt
            else false
        end as is_involuntary
    from fall_facts
),

final as (
    select
        -- ids
        churns.customer_id,
        -- dates
        churns.movement_date,
        -- classification
        case when coalesce(bool_and(causes.is_involuntary), false) then 'involuntary' else 'voluntary' end
            as churn_type,
        count(distinct causes.subscription_id) as falling_subscriptions,
        count(distinct causes.subscription_id) filter (where causes.is_involuntary) as involuntary_subscriptions,
        -- the engine's last batch taken in (int_mrr_engine_batches)
        {{ mrr_engine_stamp(scope, ref('int_customer_mrr_movements')) }} as engine_batch_at
    from churns
    left join causes
        on churns.customer_id = causes.customer_id
        and churns.movement_date = causes.movement_date
    group by churns.customer_id, churns.movement_date
)

select * from final
