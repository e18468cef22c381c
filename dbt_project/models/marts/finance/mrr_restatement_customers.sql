-- The customers whose MRR of a closed month differs from what was reported, and why (METRICS.md "Month close: as
-- reported and as restated"): their differences add up to the month's ending_mrr restatement. Only the months
-- whose waterfall moved are compared.
--   late_invoice      an invoice of the customer for a period starting by the month's end was loaded since
--   backdated_change  a subscription of the customer starting, canceled or ending by the month's end was loaded since
--   rule_change       the MRR engine's settings changed since (its rules' vars, fx rates, the contracts file, the
--                     customer mapping: METRICS.md "Incremental builds")
--   full_refresh      the engine rebuilt everything since (a --full-refresh) and nothing above explains it
--   unexplained       none of these
with

-- the closed months whose waterfall moved (metric_restatements): a nightly with nothing restated compares nothing
restated_months as (
    select distinct month
    from {{ ref('metric_restatements') }}
    where metric like 'mrr_monthly.%'
),

closed as (
    select history_months.*
    from {{ source('history', 'month_close') }} as history_months
    inner join restated_months
        on history_months.month = restated_months.month
),

reported as (
    select reported_customers.*
    from {{ source('history', 'month_close_customers') }} as reported_customers
    inner join closed
        on reported_customers.month = closed.month
),

current_months as (
    select
        customer_months.month,
        customer_months.customer_id,
        customer_months.mrr
    from {{ ref('customer_mrr_monthly') }} as customer_months
    inner join closed
        on customer_months.month = closed.month
),

changed as (
    select
        coalesce(reported.month, current_months.month) as month,
        coalesce(reported.customer_id, current_months.customer_id) as customer_id,
        coalesce(reported.mrr, 0) as reported_mrr,
        coalesce(current_months.mrr, 0) as current_mrr
    from reported
    full outer join current_months
        on reported.month = current_months.month
        and reported.customer_id = current_months.customer_id
    where coalesce(reported.mrr, 0) <> coalesce(current_months.mrr, 0)
),

mapping as (
    select * from {{ ref('stg_finance__customer_mapping') }}
),

loaded_invoices as (
    select
        coalesce(mapping.customer_key, invoices.customer_id) as customer_id,
        invoices.period_start_at,
        invoices.synced_at
    from {{ ref('stg_stripe__invoices') }} as invoices
    left join mapping
        on invoices.customer_id = mapping.customer_id
),

late_invoices as (
    select distinct
        changed.month,
        changed.customer_id
    from changed
    inner join closed
        on changed.month = closed.month
    inner join loaded_invoices
        on changed.customer_id = loaded_invoices.customer_id
        and closed.published_at < loaded_invoices.synced_at
        and loaded_invoices.period_start_at < (changed.month + interval '1 month')
),

backdated_changes as (
    select distinct
        changed.month,
        changed.customer_id
    from changed
    inner join closed
        on changed.month = closed.month
    inner join {{ ref('billing_subscriptions') }} as subscriptions
        on changed.customer_id = subscriptions.customer_id
        and closed.published_at < subscriptions.synced_at
        and least(subscriptions.started_at, subscriptions.canceled_at, subscriptions.ended_at)
        < (changed.month + interval '1 month')
),

-- the engine's settings now, and its last full rebuild
engine as (
    select
        max(settings) filter (where is_latest) as settings,
        max(batch_at) filter (where is_full_batch) as last_full_batch_at
    from (
        select
            settings,
            batch_at,
            is_full_batch,
            batch_at = max(batch_at) over () as is_latest
        from {{ ref('int_mrr_engine_batches') }}
        where settings is not null
    ) as headers
),

final as (
    select
        changed.month,
        changed.customer_id,
        changed.reported_mrr,
        changed.current_mrr,
        changed.current_mrr - changed.reported_mrr as difference,
        case
            when late_invoices.customer_id is not null then 'late_invoice'
            when backdated_changes.customer_id is not null then 'backdated_change'
            when closed.engine_settings <> engine.settings then 'rule_change'
            when engine.last_full_batch_at > closed.published_at then 'full_refresh'
            else 'unexplained'
        end as cause
    from changed
    inner join closed
        on changed.month = closed.month
    cross join engine
    left join late_invoices
        on changed.month = late_invoices.month
        and changed.customer_id = late_invoices.customer_id
    left join backdated_changes
        on changed.month = backdated_changes.month
        and changed.customer_id = backdated_changes.customer_id
)

select * from final
