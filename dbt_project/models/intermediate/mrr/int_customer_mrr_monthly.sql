-- Each customer's MRR at the end of every month in which it paid (and the month it churned,
-- with 0). The current month shows MRR as of today. Values at the month-end rate.
-- Published as the mart customer_mrr_monthly (which adds the snapshot day).
-- Incremental (macros/mrr_engine.sql, mrr_engine_first_month): every month of the customers
-- int_mrr_engine_batches lists since the last build; all customers from the last build's month on once
-- a month has ended; the current month of customers whose currency's rate changed.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    indexes=[{'columns': ['customer_id', 'month'], 'unique': True}, {'columns': ['engine_batch_at']}, {'columns': ['month']}],
    pre_hook="{{ mrr_engine_delete(ref('int_customer_mrr_movements'), 'customer_id', also='months') }}",
) }}
{%- set scope = mrr_engine_scope(ref('int_customer_mrr_movements')) %}

with

movements as (
    select * from {{ ref('int_customer_mrr_movements') }}
),

{% if not scope.full -%}
changed_customers as (
    {{ mrr_engine_changed(scope, 'customer_id') }}
),
{%- endif %}

customers as (
    select * from {{ ref('billing_customers') }}
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

as_of as (
    select ({{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_date
),

spans as (
    select
        {%- if scope.full %}
        true as is_changed,
        {%- else %}
        customer_id in (select customer_id from changed_customers) as is_changed,
        {%- endif %}
        customer_id,
        currency,
        mrr_after_local,
        movement_date as valid_from,
        lead(movement_date) over (partition by customer_id order by movement_date) as valid_to
    from movements
),

month_ends as (
    select
        spans.customer_id,
        spans.currency,
        spans.mrr_after_local,
        months.month::date as month,
        least((months.month + interval '1 month - 1 day')::date, as_of.as_of_date) as snapshot_date,
        spans.valid_from,
        spans.valid_to
    from spans
    cross join as_of
    cross join
        lateral generate_series(
            {{ mrr_engine_first_month(
                scope, "date_trunc('month', spans.valid_from)", 'spans.is_changed', 'spans.currency'
            ) }},
            case
                when spans.mrr_after_local <= 0 then date_trunc('month', spans.valid_from)
                else date_trunc('month', coalesce(spans.valid_to - 1, as_of.as_of_date))
            end,
            interval '1 month'
        ) as months (month)
    where months.month <= as_of.as_of_date
),

in_span as (
    select *
    from month_ends
    where snapshot_date >= valid_from
        and (valid_to is null or snapshot_date < valid_to)
),

final as (
    select
        -- ids
        in_span.customer_id,
        -- dates
        in_span.month,
        -- amounts
        round(in_span.mrr_after_local * {{ fx_rate('in_span.currency', 'fx.rate') }}, 4) as mrr,
        in_span.currency,
        in_span.mrr_after_local as mrr_local,
        -- attributes
        customers.billing_account,
        customers.country,
        customers.metadata ->> 'channel' as acquisition_channel,
        case
            when in_span.mrr_after_local <= 0 then 'churned'
            when {{ fx_rate('in_span.currency', 'fx.rate') }} is null then null
            when in_span.mrr_after_local * coalesce(fx.rate, 1) < 100 then 'under 100'
            when in_span.mrr_after_local * coalesce(fx.rate, 1) < 500 then '100-500'
            when in_span.mrr_after_local * coalesce(fx.rate, 1) < 2000 then '500-2000'
            else '2000+'
        end as mrr_band,
        -- the engine's last batch taken in (int_mrr_engine_batches)
        {{ mrr_engine_stamp(scope, ref('int_customer_mrr_movements')) }} as engine_batch_at
    from in_span
    left join fx
        on in_span.snapshot_date = fx.rate_date
        and in_span.currency = fx.currency
    left join customers
        on in_span.customer_id = customers.customer_id
)

select * from final
