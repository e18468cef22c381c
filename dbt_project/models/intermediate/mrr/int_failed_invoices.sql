-- Every invoice whose first payment attempt failed, with what became of it (METRICS.md "Failed payments and
-- recovery"): one row per invoice charged automatically, more than 0, attempted, and either paid after more than
-- one attempt or not paid (open, uncollectible, void) after at least one.
--   recovered    paid; by `card_update` when the customer's default payment method was made after the
--                failure and at or before the payment (Stripe attempts again when a new default card is set),
--                else by `retry` (Stripe's retry schedule, Smart Retries)
--   churned      not paid, and the customer churned involuntarily (int_customer_churn_causes) on or after the
--                day it failed, or before it without its subscription counting again since (Stripe goes on
--                invoicing a past-due subscription)
--   in_dunning   still open, and its subscription still counts MRR today (past due, within the grace days)
--   lost         not paid otherwise: voided, marked uncollectible while the customer stayed, or canceled by
--                the customer while past due
-- Rebuilt every build: failed invoices are a few in a hundred.
with

invoices as (
    select
        invoice_id,
        customer_id,
        subscription_id,
        currency,
        status,
        attempt_count,
        amount_due_cents,
        coalesce(finalized_at, created_at) as failed_at,
        paid_at
    from {{ ref('stg_stripe__invoices') }}
    where collection_method = 'charge_automatically'
        and amount_due_cents > 0
        and (
            (status = 'paid' and attempt_count > 1)
            or (status in ('open', 'uncollectible', 'void') and attempt_count >= 1)
        )
),

-- the invoice's MRR: its recurring lines' (METRICS.md "Normalising to a month")
invoice_mrr as (
    select
        lines.invoice_id,
        sum(lines.mrr_local) as mrr_local
    from {{ ref('int_invoice_lines_classified') }} as lines
    inner join invoices
        on lines.invoice_id = invoices.invoice_id
    where lines.line_kind = 'recurring'
    group by lines.invoice_id
),

failed_subscriptions as (
    select distinct subscription_id
    from invoices
),

-- each subscription's MRR today: the sum of its changes
subscription_levels as (
    select
        changes.subscription_id,
        sum(changes.mrr_change_local) as mrr_local
    from {{ ref('int_subscription_prices_mrr_changes') }} as changes
    inner join failed_subscriptions
        on changes.subscription_id = failed_subscriptions.subscription_id
    group by changes.subscription_id
),

involuntary_churns as (
    select
        customer_id,
        movement_date
    from {{ ref('int_customer_churn_causes') }}
    where churn_type = 'involuntary'
),

-- each customer's latest churn
last_churns as (
    select distinct on (customer_id)
        customer_id,
        churn_type
    from {{ ref('int_customer_churn_causes') }}
    order by customer_id asc, movement_date desc
),

-- billing_customers' id is the merged customer's (a mapping); the invoice's is Stripe's
payment_methods as (
    select
        customer_id,
        default_payment_method_created_at
    from {{ ref('stg_stripe__customers') }}
),

mapping as (
    select * from {{ ref('stg_finance__customer_mapping') }}
),

merged as (
    select
        invoices.*,
        coalesce(mapping.customer_key, invoices.customer_id) as merged_customer_id
    from invoices
    left join mapping
        on invoices.customer_id = mapping.customer_id
),

-- the failed invoices whose customer churned involuntarily on or after the day they failed
churned_after_failure as (
    select distinct merged.invoice_id
    from merged
    inner join involuntary_churns
        on merged.merged_customer_id = involuntary_churns.customer_id
        and involuntary_churns.movement_date >= (merged.failed_at at time zone 'UTC')::date
),

classified as (
    select
        merged.*,
        invoice_mrr.mrr_local,
        coalesce(subscription_levels.mrr_local, 0) as subscription_mrr_today_local,
        case
            when merged.status = 'paid' then 'recovered'
            when churned_after_failure.invoice_id is not null then 'churned'
            -- Stripe goes on invoicing a past-due subscription after it stopped counting: churned already
            when coalesce(subscription_levels.mrr_local, 0) = 0 and last_churns.churn_type = 'involuntary'
            then 'churned'
            when merged.status = 'open' and coalesce(subscription_levels.mrr_local, 0) > 0 then 'in_dunning'
            else 'lost'
        end as outcome,
        case
            when merged.status <> 'paid' then null
            when payment_methods.default_payment_method_created_at > merged.failed_at
                and payment_methods.default_payment_method_created_at <= merged.paid_at
            then 'card_update'
            else 'retry'
        end as recovery_method
    from merged
    left join churned_after_failure
        on merged.invoice_id = churned_after_failure.invoice_id
    left join invoice_mrr
        on merged.invoice_id = invoice_mrr.invoice_id
    left join subscription_levels
        on merged.subscription_id = subscription_levels.subscription_id
    left join payment_methods
        on merged.customer_id = payment_methods.customer_id
    left join last_churns
        on merged.merged_customer_id = last_churns.customer_id
),

final as (
    select
        -- ids
        invoice_id,
        merged_customer_id as customer_id,
        subscription_id,
        -- what became of it
        outcome,
        recovery_method,
        attempt_count,
        -- amounts in the invoice's currency (major units)
        currency,
        {{ cents_to_major('amount_due_cents', 'currency') }} as amount_due_local,
        coalesce(mrr_local, 0) as mrr_local,
        -- the subscription's MRR today, on the latest of its invoices in dunning (counted once)
        case
            when outcome = 'in_dunning' and row_number() over (
                    partition by subscription_id, outcome order by failed_at desc, invoice_id desc
                ) = 1
            then subscription_mrr_today_local
            else 0
        end as mrr_in_dunning_local,
        -- timestamps
        failed_at,
        paid_at,
        case when outcome = 'recovered' then extract(epoch from paid_at - failed_at) / 86400 end
            as days_to_recover
    from classified
)

select * from final
