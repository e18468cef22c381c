-- The MRR of every subscription, per price, as a step function: one row each time a
-- (subscription, price) level changes. All MRR marts derive from this model.
-- Its points (cycle, proration, lapse, end) and their rules are in int_subscription_mrr_points;
-- here they become levels (METRICS.md "When a subscription counts"):
--   an absolute point (a cycle invoice, a lapse, an end) sets each price's level afresh, and a price
--   billed before it but absent from it drops to zero there;
--   a proration adds to the level of its price until the next absolute point;
--   a level is never below zero (a credit larger than what was counted changes nothing more).
-- Linear at scale: window functions over one analyzed table, and one hash join.
-- Incremental: only the subscriptions int_mrr_engine_batches lists since the last build are recomputed.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    indexes=[{'columns': ['subscription_id']}, {'columns': ['customer_id']}, {'columns': ['engine_batch_at']}],
    pre_hook="{{ mrr_engine_delete(ref('int_subscription_mrr_points'), 'subscription_id') }}",
) }}
{%- set scope = mrr_engine_scope(ref('int_subscription_mrr_points')) %}

with

points as (
    select * from {{ ref('int_subscription_mrr_points') }}
    {% if not scope.full -%}
    where subscription_id in ({{ mrr_engine_changed(scope, 'subscription_id') }})
    {%- endif %}
),

subscriptions as (
    select
        subscription_id,
        customer_id,
        billing_account,
        currency
    from {{ ref('billing_subscriptions') }}
    {% if not scope.full -%}
    where subscription_id in ({{ mrr_engine_changed(scope, 'subscription_id') }})
    {%- endif %}
),

group_starts as (
    select
        subscription_id,
        abs_seq,
        point_at,
        priority
    from points
    where starts_group
),

-- per price and group: is the price billed at the group's absolute point?
price_groups as (
    select
        subscription_id,
        price_id,
        abs_seq,
        bool_or(is_absolute) as at_absolute_point
    from points
    where price_id is not null
    group by subscription_id, price_id, abs_seq
),

-- a price billed in a group but not at the next group's absolute point drops to zero there
dropped_prices as (
    select
        next_group.subscription_id,
        next_group.point_at,
        next_group.priority,
        true as is_absolute,
        followed.price_id,
        0::numeric as mrr_value
    from (
        select
            *,
            lead(abs_seq) over w as next_abs_seq,
            lead(at_absolute_point) over w as next_at_absolute_point
        from price_groups
        window w as (partition by subscription_id, price_id order by abs_seq)
    ) as followed
    inner join group_starts as next_group
        on followed.subscription_id = next_group.subscription_id
        and next_group.abs_seq = followed.abs_seq + 1
    where
        not (
            coalesce(followed.next_abs_seq = followed.abs_seq + 1, false)
            and followed.next_at_absolute_point
        )
),

price_events as (
    select
        subscription_id,
        point_at,
        priority,
        is_absolute,
        price_id,
        mrr_value
    from points
    where price_id is not null
    union all
    select
        subscription_id,
        point_at,
        priority,
        is_absolute,
        price_id,
        mrr_value
    from dropped_prices
),

price_levels as (
    select
        *,
        sum(mrr_value) over (
            partition by subscription_id, price_id, level_group order by point_at, priority
            rows between unbounded preceding and current row
        ) as running_level
    from (
        select
            *,
            sum(case when is_absolute then 1 else 0 end) over (
                partition by subscription_id, price_id order by point_at, priority
                rows between unbounded preceding and current row
            ) as level_group
        from price_events
    ) as grouped
),

-- the level after the last event of each instant
instant_levels as (
    select distinct on (subscription_id, price_id, point_at)
        subscription_id,
        price_id,
        point_at,
        greatest(running_level, 0) as mrr_level
    from price_levels
    order by subscription_id asc, price_id asc, point_at asc, priority desc
),

changes as (
    select
        *,
        mrr_level - coalesce(
            lag(mrr_level) over (partition by subscription_id, price_id order by point_at), 0
        ) as mrr_change
    from instant_levels
),

-- older API versions (and emulators) have no currency on the subscription; its lines always do
line_currencies as (
    select
        subscription_id,
        min(currency) as currency
    from {{ ref('int_invoice_lines_classified') }}
    where line_kind in ('recurring', 'proration')
    {% if not scope.full -%}
    and subscription_id in ({{ mrr_engine_changed(scope, 'subscription_id') }})
    {%- endif %}
    group by subscription_id
),

final as (
    select
        -- ids
        changes.subscription_id,
        subscriptions.customer_id,
        subscriptions.billing_account,
        changes.price_id,
        -- amounts (the customer's currency, major units)
        coalesce(subscriptions.currency, line_currencies.currency) as currency,
        changes.mrr_level as mrr_local,
        changes.mrr_change as mrr_change_local,
        -- timestamps
        changes.point_at as changed_at,
        {{ mrr_engine_stamp(scope, ref('int_subscription_mrr_points')) }} as engine_batch_at
    from changes
    inner join subscriptions
        on changes.subscription_id = subscriptions.subscription_id
    left join line_currencies
        on changes.subscription_id = line_currencies.subscription_id
    where changes.mrr_change <> 0
)

select * from final
