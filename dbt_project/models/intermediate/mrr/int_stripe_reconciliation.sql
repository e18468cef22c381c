-- The engine's MRR against Stripe's own invoice lines at the end of the last complete month (METRICS.md
-- "Reconciliation with Stripe"): per customer with MRR on either side, both values in the reporting
-- currency and the cause of any difference. The Dagster check stripe_reconciliation reads it (warns on
-- an unexplained gap, fails on unpriced lines).
--   invoice side: recurring lines (paid or open) whose period covers the month's end, normalised to a month;
--   engine side:  int_customer_mrr_monthly at the month's end;
--   cause:        unpriced_lines (cycle lines of a paying subscription whose price no load brought: without
--                 its interval neither side can value them; the engine's MRR then comes from the customer's
--                 other lines and earlier periods) | matched | mid_period_change (a proration: the engine
--                 counts the new rate at once) | ended_before_month_end | unpaid_renewal | unexplained;
--   unpriced_*:   those lines: the prices they name, how many, what they bill for their period (local currency).
with

as_of as (
    select
        (date_trunc('month', {{ as_of_timestamp() }} at time zone 'UTC') - interval '1 month')::date as month,
        date_trunc('month', {{ as_of_timestamp() }} at time zone 'UTC') at time zone 'UTC' as month_end_at
),

mapping as (
    select * from {{ ref('stg_finance__customer_mapping') }}
),

-- customers with a contract of the contracts file (merged with a Stripe customer or not): not Stripe's alone
contract_customers as (
    select distinct customer_id
    from {{ ref('billing_subscriptions') }}
    where billing_source = 'contracts'
),

-- the lines whose service period covers the month's end (the period_end_at index finds them); a customer the
-- mapping file merges is known by its key (METRICS.md "One customer across sources")
lines as (
    select
        lines.*,
        coalesce(mapping.customer_key, lines.customer_id) as customer_key
    from {{ ref('int_invoice_lines_classified') }} as lines
    left join mapping
        on lines.customer_id = mapping.customer_id
    cross join as_of
    where lines.period_end_at >= as_of.month_end_at
        and lines.period_start_at < as_of.month_end_at
),

subscriptions as (
    select * from {{ ref('stg_stripe__subscriptions') }}
),

customer_months as (
    select * from {{ ref('int_customer_mrr_monthly') }}
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

invoice_side as (
    select
        customer_key as customer_id,
        min(currency) as currency,
        sum(mrr_local) as mrr_local
    from lines
    where line_kind = 'recurring' and invoice_status in ('paid', 'open')
    group by customer_key
),

unpriced as (
    select
        customer_key as customer_id,
        min(currency) as currency,
        string_agg(distinct coalesce(price_id, '(no price id)'), ', ') as price_ids,
        count(*) as line_count,
        sum(amount_cents) as amount_cents
    from lines
    where line_type = 'subscription' and subscription_id is not null and recurring_interval is null
        and amount_cents > 0 and invoice_status in ('paid', 'open')
    group by customer_key
),

engine_side as (
    select
        customer_months.customer_id,
        customer_months.currency,
        customer_months.mrr_local
    from customer_months
    inner join as_of on customer_months.month = as_of.month
    -- Stripe's invoices against Stripe's MRR: the contracts file has no invoices to reconcile with (a customer with
    -- a contract is left out on both sides)
    where customer_months.customer_id not in (select contract_customers.customer_id from contract_customers)
),

causes as (
    select
        lines.customer_key as customer_id,
        bool_or(
            lines.line_kind = 'proration'
            and lines.invoice_status in ('paid', 'open', 'uncollectible', 'pending', 'invoiced')
        ) as has_proration,
        bool_or(subscriptions.ended_at < as_of.month_end_at) as has_ended,
        bool_or(lines.line_kind = 'recurring' and lines.invoice_status in ('open', 'uncollectible')) as has_unpaid
    from lines
    cross join as_of
    left join subscriptions
        on lines.subscription_id = subscriptions.subscription_id
    group by lines.customer_key
),

compared as (
    select
        coalesce(engine_side.customer_id, invoice_side.customer_id, unpriced.customer_id) as customer_id,
        coalesce(engine_side.currency, invoice_side.currency, unpriced.currency) as currency,
        coalesce(engine_side.mrr_local, 0) as engine_local,
        coalesce(invoice_side.mrr_local, 0) as invoice_local,
        unpriced.customer_id is not null as has_unpriced,
        unpriced.price_ids as unpriced_price_ids,
        unpriced.line_count as unpriced_line_count,
        unpriced.amount_cents as unpriced_amount_cents
    from engine_side
    full join invoice_side
        on engine_side.customer_id = invoice_side.customer_id
    full join unpriced
        on coalesce(engine_side.customer_id, invoice_side.customer_id) = unpriced.customer_id
    where
        coalesce(engine_side.customer_id, invoice_side.customer_id, unpriced.customer_id)
        not in (select contract_customers.customer_id from contract_customers)
),

final as (
    select
        as_of.month,
        compared.customer_id,
        case
            when compared.has_unpriced then 'unpriced_lines'
            when compared.engine_local = compared.invoice_local then 'matched'
            when causes.has_proration then 'mid_period_change'
            when causes.has_ended then 'ended_before_month_end'
            when causes.has_unpaid then 'unpaid_renewal'
            else 'unexplained'
        end as cause,
        compared.currency,
        compared.engine_local * {{ fx_rate('compared.currency', 'fx.rate') }} as engine_mrr,
        compared.invoice_local * {{ fx_rate('compared.currency', 'fx.rate') }} as invoice_mrr,
        compared.unpriced_price_ids,
        compared.unpriced_line_count,
        {{ cents_to_major('compared.unpriced_amount_cents', 'compared.currency') }} as unpriced_amount_local
    from compared
    cross join as_of
    left join fx
        on compared.currency = fx.currency
        and fx.rate_date = (as_of.month_end_at - interval '1 day')::date
    left join causes
        on compared.customer_id = causes.customer_id
)

select * from final
