-- Every customer that ever paid, with its MRR today and what is scheduled to happen to it
-- (METRICS.md "Pending churn"). A cancellation scheduled for the future changes no MRR yet.
-- Published as the mart customer_mrr_current.
-- Incremental: the customers int_mrr_engine_batches lists since the last build, and the customers billed
-- in a currency whose rate changed since the last build's "today".
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    indexes=[{'columns': ['customer_id'], 'unique': True}, {'columns': ['engine_batch_at']}],
    pre_hook="{{ mrr_engine_delete(ref('int_customer_mrr_movements'), 'customer_id', also='repriced') }}",
) }}
{%- set scope = mrr_engine_scope(ref('int_customer_mrr_movements')) %}

with

all_movements as (
    select * from {{ ref('int_customer_mrr_movements') }}
),

movements as (
    select * from all_movements
    {% if not scope.full -%}
    where customer_id in ({{ mrr_engine_changed(scope, 'customer_id') }})
        or currency in ({{ mrr_engine_repriced_currencies(scope) }})
    {%- endif %}
),

changes as (
    select * from {{ ref('int_subscription_prices_mrr_changes') }}
    {% if not scope.full -%}
    where customer_id in (select customer_id from movements)
    {%- endif %}
),

-- a `cancel_at` that has passed ends the subscription though the object loaded has no `ended_at` yet, and a
-- pause whose `resumes_at` has passed is over (Stripe clears it then): METRICS.md "When a subscription counts"
subscriptions as (
    select
        subscription_id,
        customer_id,
        is_cancel_at_period_end,
        cancel_at,
        coalesce(ended_at, case when cancel_at <= {{ as_of_timestamp() }} then cancel_at end) as ended_at,
        is_collection_paused and coalesce(pause_resumes_at > {{ as_of_timestamp() }}, true) as is_collection_paused
    from {{ ref('billing_subscriptions') }}
    {% if not scope.full -%}
    where customer_id in (select customer_id from movements)
    {%- endif %}
),

customers as (
    select * from {{ ref('billing_customers') }}
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

as_of as (
    select ({{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_date
),

-- today's rate per currency (a hash join: one lookup per currency, not per customer)
today_rates as (
    select
        currencies.currency,
        {{ fx_rate('currencies.currency', 'fx.rate') }} as rate
    from (select distinct currency from movements) as currencies
    cross join as_of
    left join fx
        on currencies.currency = fx.currency
        and as_of.as_of_date = fx.rate_date
),

latest as (
    select distinct on (customer_id)
        customer_id,
        currency,
        mrr_after_local as mrr_local,
        movement_date as last_movement_date
    from movements
    order by customer_id asc, movement_date desc
),

firsts as (
    select
        customer_id,
        min(movement_date) as first_paid_date
    from movements
    group by customer_id
),

subscription_mrr as (
    select
        subscription_id,
        sum(mrr_local) as mrr_local
    from (
        select distinct on (subscription_id, price_id)
            subscription_id,
            mrr_local
        from changes
        order by subscription_id asc, price_id asc, changed_at desc
    ) as latest_levels
    group by subscription_id
),

subscription_flags as (
    select
        subscriptions.customer_id,
        count(*) filter (where subscription_mrr.mrr_local > 0) as paying_subscriptions,
        bool_or(subscriptions.is_collection_paused and subscriptions.ended_at is null) as is_paused,
        bool_or(
            subscriptions.ended_at is null
            and (subscriptions.is_cancel_at_period_end or subscriptions.cancel_at is not null)
        ) as has_scheduled_cancellation,
        min(subscriptions.cancel_at) filter (where subscriptions.ended_at is null) as scheduled_cancel_at,
        coalesce(sum(subscription_mrr.mrr_local) filter (
            where subscriptions.ended_at is null
            and (subscriptions.is_cancel_at_period_end or subscriptions.cancel_at is not null)
        ), 0) as pending_churn_mrr_local
    from subscriptions
    left join subscription_mrr
        on subscriptions.subscription_id = subscription_mrr.subscription_id
    group by subscriptions.customer_id
),

final as (
    select
        -- ids
        latest.customer_id,
        customers.email,
        -- amounts
        round(latest.mrr_local * rates.rate, 4) as mrr,
        latest.currency,
        latest.mrr_local,
        round(coalesce(subscription_flags.pending_churn_mrr_local, 0) * rates.rate, 4) as pending_churn_mrr,
        -- state
        latest.mrr_local > 0 as is_paying,
        coalesce(subscription_flags.paying_subscriptions, 0) as paying_subscriptions,
        coalesce(subscription_flags.is_paused, false) as is_paused,
        coalesce(subscription_flags.has_scheduled_cancellation, false) as has_scheduled_cancellation,
        subscription_flags.scheduled_cancel_at,
        -- attributes
        customers.billing_account,
        customers.country,
        customers.metadata ->> 'channel' as acquisition_channel,
        -- dates
        firsts.first_paid_date,
        latest.last_movement_date,
        -- the engine's last batch taken in (int_mrr_engine_batches)
        {{ mrr_engine_stamp(scope, ref('int_customer_mrr_movements')) }} as engine_batch_at
    from latest
    left join today_rates as rates
        on latest.currency = rates.currency
    left join firsts
        on latest.customer_id = firsts.customer_id
    left join subscription_flags
        on latest.customer_id = subscription_flags.customer_id
    left join customers
        on latest.customer_id = customers.customer_id
)

select * from final
