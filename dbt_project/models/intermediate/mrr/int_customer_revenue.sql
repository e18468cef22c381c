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

mapping as (
    select * from {{ ref('stg_finance__customer_mapping') }}
),

{% if not scope.full -%}
-- the customers to add up again, by their Stripe ids (a merged customer's key: each id merged under it)
changed_ids as (
    {{ mrr_engine_changed(scope, 'customer_id') }}
    union
    select mapping.customer_id from mapping
    where mapping.customer_key in ({{ mrr_engine_changed(scope, 'customer_id') }})
),
{%- endif %}

-- a customer the mapping file merges is known by its key (METRICS.md "One customer across sources")
invoices as (
    select
        coalesce(mapping.customer_key, invoices.customer_id) as customer_id,
        invoices.amount_paid_cents,
        invoices.tax_cents,
        invoices.currency,
        invoices.paid_at,
        invoices.created_at
    from {{ ref('stg_stripe__invoices') }} as invoices
    left join mapping
        on invoices.customer_id = mapping.customer_id
    where invoices.status = 'paid'
    {% if not scope.full -%}
    and invoices.customer_id in (select changed_ids.customer_id from changed_ids)
    {%- endif %}
),

credit_notes as (
    select
        coalesce(mapping.customer_key, credit_notes.customer_id) as customer_id,
        credit_notes.total_cents,
        credit_notes.currency,
        credit_notes.created_at
    from {{ ref('stg_stripe__credit_notes') }} as credit_notes
    left join mapping
        on credit_notes.customer_id = mapping.customer_id
    where coalesce(credit_notes.status, 'issued') <> 'void'
    {% if not scope.full -%}
    and credit_notes.customer_id in (select changed_ids.customer_id from changed_ids)
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
