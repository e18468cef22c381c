-- Each customer's MRR per price at the end of every month (the current month: as of today), with the
-- number of its subscriptions on the price then, at the month-end rate: the rows mrr_by_plan adds up.
-- Incremental like int_customer_mrr_monthly (macros/mrr_engine.sql, mrr_engine_first_month).
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    indexes=[{'columns': ['customer_id', 'month']}, {'columns': ['engine_batch_at']}],
    pre_hook="{{ mrr_engine_delete(ref('int_subscription_prices_mrr_changes'), 'customer_id', also='months') }}",
) }}
{%- set scope = mrr_engine_scope(ref('int_subscription_prices_mrr_changes')) %}

with

changes as (
    select * from {{ ref('int_subscription_prices_mrr_changes') }}
),

{% if not scope.full -%}
changed_customers as (
    {{ mrr_engine_changed(scope, 'customer_id') }}
),
{%- endif %}

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
        subscription_id,
        customer_id,
        billing_account,
        price_id,
        currency,
        mrr_local,
        changed_at as valid_from,
        lead(changed_at) over (partition by subscription_id, price_id order by changed_at) as valid_to
    from changes
),

month_ends as (
    select
        spans.*,
        months.month::date as month,
        least((months.month + interval '1 month - 1 day')::date, as_of.as_of_date) as snapshot_date
    from spans
    cross join as_of
    cross join
        lateral generate_series(
            {{ mrr_engine_first_month(
                scope, "date_trunc('month', spans.valid_from at time zone 'UTC')", 'spans.is_changed', 'spans.currency'
            ) }},
            date_trunc('month', coalesce(spans.valid_to at time zone 'UTC', as_of.as_of_date::timestamp)),
            interval '1 month'
        ) as months (month)
    where spans.mrr_local <> 0
        and months.month <= as_of.as_of_date
),

-- the level in force at the end of the snapshot day
in_span as (
    select *
    from month_ends
    where (valid_from at time zone 'UTC')::date <= snapshot_date
        and (valid_to is null or (valid_to at time zone 'UTC')::date > snapshot_date)
),

-- a subscription has at most one span of a price in force on a day, so its rows here count subscriptions
final as (
    select
        in_span.customer_id,
        in_span.billing_account,
        in_span.price_id,
        in_span.month,
        in_span.currency,
        sum(round(in_span.mrr_local * {{ fx_rate('in_span.currency', 'fx.rate') }}, 4)) as mrr,
        count(*) as subscriptions,
        -- the engine's last batch taken in (int_mrr_engine_batches)
        {{ mrr_engine_stamp(scope, ref('int_subscription_prices_mrr_changes')) }} as engine_batch_at
    from in_span
    left join fx
        on in_span.snapshot_date = fx.rate_date
        and in_span.currency = fx.currency
    group by in_span.customer_id, in_span.billing_account, in_span.price_id, in_span.month, in_span.currency
)

select * from final
