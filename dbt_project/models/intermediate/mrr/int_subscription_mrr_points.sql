-- Every point in time at which a subscription's MRR may change, per price (Stripe's, from its invoice lines
-- here, and the contracts file's, from int_contract_mrr_points): the input of
-- int_subscription_prices_mrr_changes, kept as its own analyzed table so both stay linear at scale.
-- The rules (METRICS.md "When a subscription counts"):
--   cycle     a cycle invoice's lines set the subscription's absolute level at the period start
--             (paid, open and uncollectible invoices count; void ones and stale drafts set zero);
--   proration a mid-period change adds the full-period rate of its proration lines at the change; a
--             proration still a pending invoice item counts the same, until a line of a finalized (not
--             draft) invoice carries it (then the line counts instead); a deleted item counts nothing;
--   lapse     unpaid (open, uncollectible) cycle invoices stop counting `past_due_grace_days` after
--             the first unpaid period of the streak starts, or when one is marked uncollectible,
--             whichever comes first; later unpaid invoices of the streak count nothing;
--   end       `ended_at` (immediate cancel, cancel at period end once reached, dunning) sets zero, and so does
--             a `cancel_at` that has passed on a subscription loaded without `ended_at`.
-- A subscription `incomplete` (its first payment failed or awaits 3-D Secure) or `incomplete_expired` (Stripe
-- gave up after 23 hours and voided the invoice) has no point at all: it never was MRR, in both methodologies.
-- With mrr_methodology 'stripe' (METRICS.md "Methodology"): the end is the cancellation itself
-- (`canceled_at`, also for a cancellation at period end, scheduled or reached), and an unpaid streak
-- counts until an invoice of it is marked uncollectible (no past_due_grace_days limit).
-- At one instant an absolute point wins over prorations, and later kinds win over earlier ones.
-- Incremental: only the subscriptions int_mrr_engine_batches lists since the last build are recomputed.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    indexes=[{'columns': ['subscription_id']}, {'columns': ['engine_batch_at']}],
    pre_hook="{{ mrr_engine_delete(ref('int_mrr_engine_batches'), 'subscription_id') }}",
) }}
{%- set scope = mrr_engine_scope(ref('int_mrr_engine_batches')) %}

with

-- not materialized: read twice, a materialized CTE would have no statistics, and the planner, taking
-- it for a handful of rows, joined it to the streaks by nested loops (quadratic: 8 s at 1,000 customers)
lines as not materialized (
    select
        subscription_id,
        invoice_id,
        invoice_status,
        line_kind,
        invoice_item_id,
        is_invoice_item,
        price_id,
        period_start_at,
        period_end_at,
        marked_uncollectible_at,
        amount_cents,
        mrr_local
    from {{ ref('int_invoice_lines_classified') }}
    where line_kind in ('recurring', 'proration')
    {% if not scope.full -%}
    and subscription_id in ({{ mrr_engine_changed(scope, 'subscription_id') }})
    {%- endif %}
),

subscriptions as (
    select
        subscription_id,
        -- a `cancel_at` passed ends it, though the subscription was loaded before Stripe set `ended_at` (a point
        -- after today never counts: a scheduled cancellation changes nothing until it happens)
        {% if mrr_methodology() == 'stripe' -%}
        least(coalesce(ended_at, cancel_at), canceled_at) as ended_at
        {%- else -%}
        coalesce(ended_at, cancel_at) as ended_at
        {%- endif %},
        coalesce(status in ('incomplete', 'incomplete_expired'), false) as is_incomplete
    from {{ ref('billing_subscriptions') }}
    {% if not scope.full -%}
    where subscription_id in ({{ mrr_engine_changed(scope, 'subscription_id') }})
    {%- endif %}
),

-- the contracts file's versions, as points of the same kinds (int_contract_mrr_points)
contract_points as (
    select * from {{ ref('int_contract_mrr_points') }}
    {% if not scope.full -%}
    where subscription_id in ({{ mrr_engine_changed(scope, 'subscription_id') }})
    {%- endif %}
),

as_of as (
    select {{ as_of_timestamp() }} as as_of_at
),

-- one row per cycle invoice; consecutive unpaid ones form a streak (a paid one ends it)
cycle_invoices as (
    select
        subscription_id,
        invoice_id,
        invoice_status,
        period_start_at,
        max(period_end_at) as period_end_at,
        min(marked_uncollectible_at) as marked_uncollectible_at,
        sum(amount_cents) as amount_cents,
        invoice_status in ('open', 'uncollectible') and sum(amount_cents) > 0 as is_unpaid
    from lines
    where line_kind = 'recurring'
    group by subscription_id, invoice_id, invoice_status, period_start_at
),

streaks as (
    select
        *,
        sum(case when is_unpaid then 0 else 1 end) over (
            partition by subscription_id order by period_start_at, invoice_id
            rows between unbounded preceding and current row
        ) as streak_id
    from cycle_invoices
),

-- past due counts for `past_due_grace_days` from the first unpaid period, or until an invoice
-- of the streak is marked uncollectible, whichever comes first
streak_lapses as (
    select
        subscription_id,
        streak_id,
        least(
            {% if mrr_methodology() == 'stripe' -%}
            'infinity'::timestamptz,
            {%- else -%}
            min(period_start_at) + interval '{{ var("past_due_grace_days") }} days',
            {%- endif %}
            coalesce(min(marked_uncollectible_at), 'infinity'::timestamptz)
        ) as lapse_at,
        max(period_end_at) as streak_end_at
    from streaks
    where is_unpaid
    group by subscription_id, streak_id
),

cycle_rules as (
    select
        streaks.invoice_id,
        case
            when streaks.invoice_status = 'paid' then true
            when streaks.is_unpaid then streaks.period_start_at < streak_lapses.lapse_at
            when streaks.invoice_status in ('open', 'uncollectible') then true  -- $0 invoices
            else false  -- void, or a stale draft (paused with keep_as_draft, or an unpaid subscription)
        end as counts
    from streaks
    left join streak_lapses
        on streaks.subscription_id = streak_lapses.subscription_id
        and streaks.streak_id = streak_lapses.streak_id
),

cycle_points as (
    select
        lines.subscription_id,
        lines.period_start_at as point_at,
        1 as priority,
        true as is_absolute,
        bool_or(cycle_rules.counts) as period_counts,
        lines.price_id,
        sum(case when cycle_rules.counts then lines.mrr_local else 0 end) as mrr_value
    from lines
    inner join cycle_rules
        on lines.invoice_id = cycle_rules.invoice_id
    cross join as_of
    where lines.line_kind = 'recurring'
        and (
            lines.invoice_status in ('paid', 'open', 'uncollectible', 'void')
            or (
                lines.invoice_status = 'draft'
                and lines.period_start_at
                < as_of.as_of_at - interval '{{ var("draft_invoice_grace_hours") }} hours'
            )
        )
    group by lines.subscription_id, lines.period_start_at, lines.price_id
),

-- invoice items a line of a finalized invoice carries: the line counts, not the item
invoiced_items as (
    select distinct invoice_item_id
    from lines
    where not is_invoice_item and invoice_item_id is not null and invoice_status <> 'draft'
),

proration_points as (
    select
        lines.subscription_id,
        lines.period_start_at as point_at,
        2 as priority,
        false as is_absolute,
        null::boolean as period_counts,
        lines.price_id,
        sum(lines.mrr_local) as mrr_value
    from lines
    left join invoiced_items
        on lines.is_invoice_item and lines.invoice_item_id = invoiced_items.invoice_item_id
    where lines.line_kind = 'proration'
        and (
            (not lines.is_invoice_item and lines.invoice_status in ('paid', 'open', 'uncollectible'))
            or (
                lines.is_invoice_item
                and lines.invoice_status in ('pending', 'invoiced')
                and invoiced_items.invoice_item_id is null
            )
        )
    group by lines.subscription_id, lines.period_start_at, lines.price_id
),

lapse_points as (
    select
        subscription_id,
        lapse_at as point_at,
        3 as priority,
        true as is_absolute,
        false as period_counts,
        null::text as price_id,
        0::numeric as mrr_value
    from streak_lapses
    where lapse_at < streak_end_at
),

end_points as (
    select
        subscription_id,
        ended_at as point_at,
        4 as priority,
        true as is_absolute,
        false as period_counts,
        null::text as price_id,
        0::numeric as mrr_value
    from subscriptions
    where ended_at is not null
),

all_points as (
    select * from cycle_points
    union all
    select * from proration_points
    union all
    select * from lapse_points
    union all
    select * from end_points
    union all
    select * from contract_points
),

-- nothing counts after the subscription ended, or after "now"
bounded as (
    select all_points.*
    from all_points
    left join subscriptions
        on all_points.subscription_id = subscriptions.subscription_id
    cross join as_of
    where all_points.point_at <= as_of.as_of_at
        and not coalesce(subscriptions.is_incomplete, false)
        and (
            subscriptions.ended_at is null
            or all_points.point_at < subscriptions.ended_at
            or (all_points.point_at = subscriptions.ended_at and all_points.priority = 4)
        )
),

-- a proration at the same instant as an absolute point is already part of it
without_shadowed as (
    select *
    from (
        select
            *,
            bool_or(is_absolute) over (partition by subscription_id, point_at) as instant_has_absolute
        from bounded
    ) as flagged
    where is_absolute or not instant_has_absolute
),

-- number the absolute points of each subscription; every row belongs to the latest one before it
sequenced as (
    select
        *,
        sum(case when is_absolute and first_row_of_point then 1 else 0 end) over (
            partition by subscription_id order by point_at asc, priority asc, first_row_of_point desc
            rows between unbounded preceding and current row
        ) as abs_seq
    from (
        select
            *,
            row_number() over (partition by subscription_id, point_at, priority order by price_id) = 1
                as first_row_of_point
        from without_shadowed
    ) as marked
),

-- a proration inside a period that does not count (void, stale draft, lapsed, ended) changes nothing:
-- the subscription is not paying then, and its next counting point sets the level afresh
final as (
    select
        subscription_id,
        point_at,
        priority,
        is_absolute,
        is_absolute and first_row_of_point as starts_group,
        price_id,
        mrr_value,
        abs_seq,
        {{ mrr_engine_stamp(scope, ref('int_mrr_engine_batches')) }} as engine_batch_at
    from (
        select
            *,
            coalesce(
                bool_or(period_counts) over (partition by subscription_id, abs_seq), true
            ) as group_counts
        from sequenced
    ) as counted
    where is_absolute or group_counts
)

select * from final
