-- Per customer and day, the net MRR change is one movement (METRICS.md "Movements").
-- Classified per customer, never per item or subscription: a plan swap is not churn + new.
-- Values in the reporting currency use the rate of the movement's day.
-- Incremental: only the customers int_mrr_engine_batches lists since the last build are recomputed.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    indexes=[{'columns': ['customer_id', 'movement_date']}, {'columns': ['engine_batch_at']}],
    pre_hook="{{ mrr_engine_delete(ref('int_subscription_prices_mrr_changes'), 'customer_id') }}",
) }}
{%- set scope = mrr_engine_scope(ref('int_subscription_prices_mrr_changes')) %}

with

changes as (
    select * from {{ ref('int_subscription_prices_mrr_changes') }}
    {% if not scope.full -%}
    where customer_id in ({{ mrr_engine_changed(scope, 'customer_id') }})
    {%- endif %}
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

daily as (
    select
        customer_id,
        currency,
        (changed_at at time zone 'UTC')::date as movement_date,
        sum(mrr_change_local) as mrr_change_local
    from changes
    group by customer_id, currency, (changed_at at time zone 'UTC')::date
    having sum(mrr_change_local) <> 0
),

running as (
    select
        *,
        sum(mrr_change_local) over (
            partition by customer_id order by movement_date rows between unbounded preceding and current row
        ) as mrr_after_local
    from daily
),

history as (
    select
        *,
        mrr_after_local - mrr_change_local as mrr_before_local,
        coalesce(bool_or(mrr_after_local > 0) over (
            partition by customer_id order by movement_date rows between unbounded preceding and 1 preceding
        ), false) as had_mrr_before,
        max(case when mrr_after_local <= 0 then movement_date end) over (
            partition by customer_id order by movement_date rows between unbounded preceding and 1 preceding
        ) as last_churn_date
    from running
),

classified as (
    select
        *,
        case
            when mrr_before_local <= 0 and mrr_after_local > 0 then
                case
                    when not had_mrr_before then 'new'
                    {% if var('reactivation_window_days') is not none -%}
                    when movement_date - last_churn_date > {{ var('reactivation_window_days') }} then 'new'
                    {% endif -%}
                    else 'reactivation'
                end
            when mrr_after_local <= 0 then 'churn'
            when mrr_after_local > mrr_before_local then 'expansion'
            else 'contraction'
        end as movement_type
    from history
),

with_rates as (
    select
        classified.*,
        {{ fx_rate('classified.currency', 'fx.rate') }} as fx_rate
    from classified
    left join fx
        on classified.movement_date = fx.rate_date
        and classified.currency = fx.currency
),

final as (
    select
        -- ids
        customer_id,
        -- dates
        movement_date,
        date_trunc('month', movement_date)::date as movement_month,
        -- classification
        movement_type,
        -- amounts in the customer's currency
        currency,
        mrr_before_local,
        mrr_after_local,
        mrr_change_local,
        -- amounts in the reporting currency at the day's rate
        fx_rate,
        round(mrr_before_local * fx_rate, 4) as mrr_before,
        round(mrr_before_local * fx_rate, 4) + round(mrr_change_local * fx_rate, 4) as mrr_after,
        round(mrr_change_local * fx_rate, 4) as mrr_change,
        -- the engine's last batch taken in (int_mrr_engine_batches)
        {{ mrr_engine_stamp(scope, ref('int_subscription_prices_mrr_changes')) }} as engine_batch_at
    from with_rates
)

select * from final
