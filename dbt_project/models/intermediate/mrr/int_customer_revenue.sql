-- What each customer has paid in all, in the reporting currency (METRICS.md "Customer lifetime"): paid
-- invoices without tax at the rate of the day paid, and credit notes (not void) at the rate of their day.
-- Incremental: only the customers int_mrr_engine_batches lists since the last build (an invoice or credit
-- note of theirs was loaded) are added up again.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    indexes=[{'columns': ['customer_id']}, {'columns': ['engine_batch_at']}],
    pre_hook="{{ mrr_engine_delete(ref('int_mrr_engine_batches'), 'customer_id') }}",
) }}
{%- set scope = mrr_engine_scope(ref('int_mrr_engine_batches')) %}

with

invoices as (
    select * from {{ ref('stg_stripe__invoices') }}
    where status = 'paid'
    {% if not scope.full -%}
    and customer_id in ({{ mrr_engine_changed(scope, 'customer_id') }})
    {%- endif %}
),

credit_notes as (
    select * from {{ ref('stg_stripe__credit_notes') }}
    where coalesce(status, 'issued') <> 'void'
    {% if not scope.full -%}
    and customer_id in ({{ mrr_engine_changed(scope, 'customer_id') }})
    {%- endif %}
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

paid as (
    select
        invoices.customer_id,
        sum(
            {{ cents_to_major('invoices.amount_paid_cents - invoices.tax_cents', 'invoices.currency') }}
            * {{ fx_rate('invoices.currency', 'fx.rate') }}
        ) as paid_revenue
    from invoices
    left join fx
        on (coalesce(invoices.paid_at, invoices.created_at) at time zone 'UTC')::date = fx.rate_date
        and invoices.currency = fx.currency
    group by invoices.customer_id
),

credited as (
    select
        credit_notes.customer_id,
        sum(
            {{ cents_to_major('credit_notes.total_cents', 'credit_notes.currency') }}
            * {{ fx_rate('credit_notes.currency', 'fx.rate') }}
        ) as credited_revenue
    from credit_notes
    left join fx
        on (credit_notes.created_at at time zone 'UTC')::date = fx.rate_date
        and credit_notes.currency = fx.currency
    group by credit_notes.customer_id
),

final as (
    select
        coalesce(paid.customer_id, credited.customer_id) as customer_id,
        coalesce(paid.paid_revenue, 0) as paid_revenue,
        coalesce(credited.credited_revenue, 0) as credited_revenue,
        -- the engine's last batch taken in (int_mrr_engine_batches)
        {{ mrr_engine_stamp(scope, ref('int_mrr_engine_batches')) }} as engine_batch_at
    from paid
    full outer join credited
        on paid.customer_id = credited.customer_id
)

select * from final
