-- Every invoice line with its invoice, price and the MRR it implies (METRICS.md "What counts as MRR").
--   line_kind: recurring (a cycle line) | proration | usage (metered) | one_off (setup fees, invoice items)
--   mrr_local: for recurring lines the line's amount net of discounts and inclusive tax, normalised to a
--              month; for prorations the signed full-period rate of the new/old item, normalised to a month.
-- Incremental: a build after a load reclassifies every line of each subscription (and each invoice
-- without one) that has an invoice loaded since the last build (synced_at), because a line's value
-- depends on its invoice and on the other cycle lines of its period; whole invoices are replaced
-- (delete+insert on invoice_id; the pre-hook also drops invoices left with no line at all).
-- Prices are read as they are: Stripe does not let a price's amount or interval change.
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='invoice_id',
    on_schema_change='fail',
    indexes=[
        {'columns': ['invoice_id']},
        {'columns': ['subscription_id']},
        {'columns': ['period_start_at']},
        {'columns': ['synced_at']},
    ],
    pre_hook="{{ delete_lines_of_refetched_invoices(ref('stg_stripe__invoices'), 'invoice_id') }}",
) }}

with

{% if is_incremental() -%}
refetched_invoices as (
    select invoice_id, subscription_id
    from {{ ref('stg_stripe__invoices') }}
    where synced_at > {{ synced_watermark() }}
),

touched_subscriptions as (
    select subscription_id from refetched_invoices where subscription_id is not null
    union
    select lines.subscription_id
    from {{ ref('stg_stripe__invoice_lines') }} as lines
    inner join refetched_invoices on lines.invoice_id = refetched_invoices.invoice_id
    where lines.subscription_id is not null
),

touched_invoices as (
    select invoice_id from refetched_invoices
    union
    select invoices.invoice_id
    from {{ ref('stg_stripe__invoices') }} as invoices
    inner join touched_subscriptions on invoices.subscription_id = touched_subscriptions.subscription_id
    union
    select lines.invoice_id
    from {{ ref('stg_stripe__invoice_lines') }} as lines
    inner join touched_subscriptions on lines.subscription_id = touched_subscriptions.subscription_id
),
{%- endif %}

lines as (
    select * from {{ ref('stg_stripe__invoice_lines') }}
    {% if is_incremental() -%}
    where invoice_id in (select invoice_id from touched_invoices)
    {%- endif %}
),

invoices as (
    select * from {{ ref('stg_stripe__invoices') }}
    {% if is_incremental() -%}
    where invoice_id in (select invoice_id from touched_invoices)
    {%- endif %}
),

prices as (
    select * from {{ ref('stg_stripe__prices') }}
),

joined as (
    select
        lines.invoice_line_id,
        lines.invoice_id,
        invoices.customer_id,
        coalesce(lines.subscription_id, invoices.subscription_id) as subscription_id,
        lines.subscription_item_id,
        lines.price_id,
        prices.product_id,
        lines.line_type,
        lines.is_proration,
        lines.currency,
        lines.quantity,
        lines.amount_cents,
        lines.discount_cents,
        lines.inclusive_tax_cents,
        lines.amount_cents - lines.discount_cents - lines.inclusive_tax_cents as net_cents,
        coalesce(lines.unit_amount_cents, prices.unit_amount_cents) as unit_amount_cents,
        prices.recurring_interval,
        prices.recurring_interval_count,
        prices.usage_type,
        invoices.status as invoice_status,
        invoices.created_at as invoice_created_at,
        invoices.marked_uncollectible_at,
        lines.period_start_at,
        lines.period_end_at,
        invoices.synced_at
    from lines
    inner join invoices
        on lines.invoice_id = invoices.invoice_id
    left join prices
        on lines.price_id = prices.price_id
),

classified as (
    select
        *,
        case
            when subscription_id is null or recurring_interval is null then 'one_off'
            when usage_type = 'metered' then 'usage'
            when is_proration then 'proration'
            when line_type = 'subscription' then 'recurring'
            else 'one_off'
        end as line_kind
    from joined
),

-- a proration is valued at the new item's full price with the discount the subscription gets in that
-- period: the net-to-gross ratio of the period's cycle lines (a window, not a join: no plan can turn it
-- into a nested loop over the lines)
valued as (
    select
        *,
        case
            when line_kind = 'recurring' then net_cents::numeric
            when line_kind = 'proration' and amount_cents = 0 then 0
            when line_kind = 'proration' and unit_amount_cents is not null then
                round(sign(amount_cents) * unit_amount_cents * quantity * coalesce(
                    sum(net_cents) filter (where line_kind = 'recurring' and amount_cents > 0) over period_lines
                        / nullif(sum(amount_cents) filter (
                            where line_kind = 'recurring' and amount_cents > 0
                        ) over period_lines, 0)::numeric,
                    net_cents::numeric / amount_cents
                ))
            when line_kind = 'proration' then
                -- no unit price (tiered): scale the prorated amount up to the whole period
                round(net_cents * {{ average_interval_seconds('recurring_interval', 'recurring_interval_count') }}
                      / nullif(extract(epoch from period_end_at - period_start_at), 0))
        end as full_period_net_cents
    from classified
    window period_lines as (partition by subscription_id, period_end_at)
),

final as (
    select
        *,
        case
            when line_kind in ('recurring', 'proration') then round(
                {{ cents_to_major('full_period_net_cents', 'currency') }}
                * {{ monthly_factor('recurring_interval', 'recurring_interval_count') }}, 4)
            else 0
        end as mrr_local
    from valued
)

select * from final
