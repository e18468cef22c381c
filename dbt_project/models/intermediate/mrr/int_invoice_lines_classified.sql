-- Every invoice line with its invoice, price and the MRR it implies (METRICS.md "What counts as MRR").
--   line_kind: recurring (a cycle line) | proration | usage (metered) | one_off (setup fees, invoice items)
--   mrr_local: for recurring lines the line's amount net of discounts and inclusive tax, normalised to a
--              month; for prorations the signed full-period rate of the new/old item, normalised to a month.
-- Besides invoice lines, one row per proration invoice item (is_invoice_item; invoice_id and invoice_line_id
-- are the item's id; invoice_status 'pending', 'invoiced' or 'deleted'): a pending proration moves MRR like
-- an invoiced one until a line of a finalized invoice carries it (int_subscription_mrr_points).
-- Incremental: a build after a load reclassifies every line of each subscription (and each invoice
-- without one) that has an invoice loaded since the last build (synced_at), because a line's value
-- depends on its invoice and on the other cycle lines of its period; whole invoices are replaced
-- (delete+insert on invoice_id; the pre-hook also drops invoices left with no line at all). What it
-- reclassifies are the key sets int_refetched_invoices, int_subscriptions_to_reclassify and
-- int_invoices_to_reclassify, built just before it.
-- Prices are read as they are: Stripe does not let a price's amount or interval change.
-- A partial index holds the cycle lines of multi-month prices, which renewals reads (macros/mrr_engine.sql).
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='invoice_id',
    on_schema_change='fail',
    indexes=[
        {'columns': ['invoice_id']},
        {'columns': ['subscription_id']},
        {'columns': ['period_start_at']},
        {'columns': ['period_end_at']},
        {'columns': ['synced_at']},
    ],
    post_hook="{{ partial_index('ilc_multi_month_terms', ['subscription_id', 'period_end_at', 'recurring_interval', 'recurring_interval_count'], multi_month_cycle_lines()) }}",
    pre_hook="{{ delete_keys_of('int_refetched_invoices', 'invoice_id') }}",
) }}
-- depends_on: {{ ref('stg_stripe__discounts') }}
-- depends_on: {{ key_set('int_refetched_invoices') }}
-- depends_on: {{ key_set('int_subscriptions_to_reclassify') }}
-- depends_on: {{ key_set('int_invoices_to_reclassify') }}
{#- Every line is valued again when the methodology changed (mrr_methodology_changed): a rebuild's values. -#}
{%- set incremental = is_incremental() and not mrr_methodology_changed() %}

with

{% if incremental -%}
-- the key sets, computed before this build changed a row (macros/incremental.sql, "Key sets")
touched_subscriptions as (
    select subscription_id from {{ ref('int_subscriptions_to_reclassify') }}
),

touched_invoices as (
    select invoice_id from {{ ref('int_invoices_to_reclassify') }}
),
{%- endif %}

lines as (
    select * from {{ ref('stg_stripe__invoice_lines') }}
    {% if incremental -%}
    where invoice_id in (select invoice_id from touched_invoices)
    {%- endif %}
),

invoices as (
    select * from {{ ref('stg_stripe__invoices') }}
    {% if incremental -%}
    where invoice_id in (select invoice_id from touched_invoices)
    {%- endif %}
),

-- proration invoice items, pending or not (deleted ones too: their row replaces the pending one)
invoice_items as (
    select * from {{ ref('stg_stripe__invoice_items') }}
    where is_proration and subscription_id is not null
    {% if incremental -%}
    and subscription_id in (select subscription_id from touched_subscriptions)
    {%- endif %}
),

prices as (
    select * from {{ ref('stg_stripe__prices') }}
),

-- percent-off discounts on each subscription while in force (Stripe lists a discount until it ends), with the
-- products a restricted coupon covers: what a proration is discounted by when no cycle line of its period says
-- (flexible billing mode: an interval change starts a period billed by proration lines alone, and with
-- `proration_discounts: included` their amounts are net with discount amounts of 0)
subscription_discounts as (
    select
        discounts.subscription_id,
        discounts.started_at,
        discounts.ends_at,
        coalesce(discounts.percent_off, coupons.percent_off) as percent_off,
        coupons.applies_to_products
    from {{ ref('stg_stripe__subscription_discounts') }} as discounts
    left join {{ ref('stg_stripe__coupons') }} as coupons
        on discounts.billing_account = coupons.billing_account and discounts.coupon_id = coupons.coupon_id
    where coalesce(discounts.percent_off, coupons.percent_off) is not null
    {% if mrr_methodology() == 'stripe' -%}
        and coalesce(discounts.duration, coupons.duration, 'forever') = 'forever'
    {%- endif %}
),
{% if mrr_methodology() == 'stripe' %}
-- the `stripe` methodology counts only the discounts of forever coupons (a discount whose coupon is
-- unknown counts, as under the default methodology); materialized: read once, not per line
discount_durations as materialized (
    select discounts.discount_id, coupons.duration
    from {{ ref('stg_stripe__discounts') }} as discounts
    inner join {{ ref('stg_stripe__coupons') }} as coupons
        on discounts.billing_account = coupons.billing_account and discounts.coupon_id = coupons.coupon_id
),
{% endif %}

all_lines as (
    select
        lines.invoice_line_id,
        lines.invoice_id,
        invoices.customer_id,
        coalesce(lines.subscription_id, invoices.subscription_id) as subscription_id,
        lines.subscription_item_id,
        lines.invoice_item_id,
        false as is_invoice_item,
        lines.price_id,
        lines.line_type,
        lines.is_proration,
        lines.currency,
        lines.quantity,
        lines.amount_cents,
        lines.discount_cents,
        lines.discount_amounts,
        lines.inclusive_tax_cents,
        lines.unit_amount_cents,
        invoices.status as invoice_status,
        invoices.created_at as invoice_created_at,
        invoices.marked_uncollectible_at,
        lines.period_start_at,
        lines.period_end_at,
        invoices.synced_at,
        invoices.billing_account
    from lines
    inner join invoices
        on lines.invoice_id = invoices.invoice_id
    union all
    select
        invoice_item_id as invoice_line_id,
        invoice_item_id as invoice_id,
        customer_id,
        subscription_id,
        subscription_item_id,
        invoice_item_id,
        true as is_invoice_item,
        price_id,
        'invoiceitem' as line_type,
        is_proration,
        currency,
        quantity,
        amount_cents,
        0 as discount_cents,
        null::jsonb as discount_amounts,
        0 as inclusive_tax_cents,
        null as unit_amount_cents,
        case when is_deleted then 'deleted' when invoice_id is null then 'pending' else 'invoiced' end
            as invoice_status,
        created_at as invoice_created_at,
        null as marked_uncollectible_at,
        period_start_at,
        period_end_at,
        synced_at,
        billing_account
    from invoice_items
),

-- the full unit price comes from the price (Stripe's own objects), else from the line's embedded price
joined as (
    select
        all_lines.invoice_line_id,
        all_lines.invoice_id,
        all_lines.customer_id,
        all_lines.subscription_id,
        all_lines.subscription_item_id,
        all_lines.price_id,
        prices.product_id,
        all_lines.line_type,
        all_lines.is_proration,
        all_lines.currency,
        all_lines.quantity,
        all_lines.amount_cents,
        all_lines.discount_cents,
        all_lines.inclusive_tax_cents,
        {% if mrr_methodology() == 'stripe' -%}
        all_lines.amount_cents - coalesce((
            select sum((discount ->> 'amount')::bigint)
            from jsonb_array_elements(all_lines.discount_amounts) as discount
            left join discount_durations on discount ->> 'discount' = discount_durations.discount_id
            where coalesce(discount_durations.duration, 'forever') = 'forever'
        ), 0) - all_lines.inclusive_tax_cents as net_cents,
        {%- else -%}
        all_lines.amount_cents - all_lines.discount_cents - all_lines.inclusive_tax_cents as net_cents,
        {%- endif %}
        coalesce(prices.unit_amount_cents, all_lines.unit_amount_cents) as unit_amount_cents,
        prices.recurring_interval,
        prices.recurring_interval_count,
        prices.usage_type,
        all_lines.invoice_status,
        all_lines.invoice_created_at,
        all_lines.marked_uncollectible_at,
        all_lines.period_start_at,
        all_lines.period_end_at,
        all_lines.synced_at,
        all_lines.invoice_item_id,
        all_lines.is_invoice_item,
        all_lines.billing_account
    from all_lines
    left join prices
        on all_lines.billing_account = prices.billing_account and all_lines.price_id = prices.price_id
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

-- the discount a proration takes: the net-to-gross ratio of the period's cycle lines of its own
-- subscription item, else of its price, else of the whole subscription (METRICS.md "Coupons"); and the
-- period's real start (its cycle lines'). Windows, not joins: no plan can turn them into nested loops.
ratios as (
    select
        *,
        coalesce(
            sum(net_cents) filter (where line_kind = 'recurring' and amount_cents > 0) over item_period
            / nullif(
                sum(amount_cents) filter (where line_kind = 'recurring' and amount_cents > 0) over item_period, 0
            )::numeric,
            sum(net_cents) filter (where line_kind = 'recurring' and amount_cents > 0) over price_period
            / nullif(
                sum(amount_cents) filter (where line_kind = 'recurring' and amount_cents > 0) over price_period, 0
            )::numeric,
            sum(net_cents) filter (where line_kind = 'recurring' and amount_cents > 0) over period_lines
            / nullif(
                sum(amount_cents) filter (where line_kind = 'recurring' and amount_cents > 0) over period_lines, 0
            )::numeric
        ) as period_net_ratio,
        min(period_start_at) filter (where line_kind = 'recurring') over period_lines as cycle_period_start_at
    from classified
    window
        period_lines as (partition by subscription_id, period_end_at),
        item_period as (partition by subscription_id, period_end_at, subscription_item_id),
        price_period as (partition by subscription_id, period_end_at, price_id)
),

-- a proration is valued at its item's full price (unit_amount x quantity, from the price: never the
-- line's prorated per-unit field) with the discount its item gets in that period (its cycle lines' ratio; a
-- period without cycle lines, the percent-off discounts in force on the subscription at its start; else the
-- line's own), whatever the line's own amount says (gross or net: flexible mode's `itemized` or `included`);
-- a tiered price (no unit amount) scales the prorated net amount by the whole period against the line's part
-- of it, the whole period being the cycle lines' (else the price's interval before the period end: a February
-- change is scaled by February)
valued as (
    select
        *,
        case
            when line_kind = 'recurring' then net_cents::numeric
            when line_kind = 'proration' and amount_cents = 0 then 0
            when line_kind = 'proration' and unit_amount_cents is not null then
                round(sign(amount_cents) * unit_amount_cents * quantity * coalesce(
                    period_net_ratio,
                    (
                        select exp(sum(ln(1 - subscription_discounts.percent_off / 100)))
                        from subscription_discounts
                        where subscription_discounts.subscription_id = ratios.subscription_id
                            and subscription_discounts.started_at <= ratios.period_start_at
                            and coalesce(subscription_discounts.ends_at > ratios.period_start_at, true)
                            and subscription_discounts.percent_off < 100
                            and (
                                subscription_discounts.applies_to_products is null
                                or subscription_discounts.applies_to_products ? ratios.product_id
                            )
                    ),
                    net_cents::numeric / amount_cents
                ))
            when line_kind = 'proration' then
                -- an invoice line's own net (gross less its discount, or net already in flexible mode's
                -- `included`); a pending item, not discounted yet, takes its period's ratio
                round(
                    case when is_invoice_item then amount_cents * coalesce(period_net_ratio, 1) else net_cents end
                    * extract(epoch from period_end_at - coalesce(
                        cycle_period_start_at,
                        {{ interval_before('period_end_at', 'recurring_interval', 'recurring_interval_count') }}
                    ))
                    / nullif(extract(epoch from period_end_at - period_start_at), 0)
                )
        end as full_period_net_cents
    from ratios
),

final as (
    select
        invoice_line_id,
        invoice_id,
        customer_id,
        subscription_id,
        subscription_item_id,
        price_id,
        product_id,
        line_type,
        is_proration,
        currency,
        quantity,
        amount_cents,
        discount_cents,
        inclusive_tax_cents,
        net_cents,
        unit_amount_cents,
        recurring_interval,
        recurring_interval_count,
        usage_type,
        invoice_status,
        invoice_created_at,
        marked_uncollectible_at,
        period_start_at,
        period_end_at,
        synced_at,
        invoice_item_id,
        is_invoice_item,
        line_kind,
        full_period_net_cents,
        case
            when line_kind in ('recurring', 'proration') then
                round(
                    {{ cents_to_major('full_period_net_cents', 'currency') }}
                    * {{ monthly_factor('recurring_interval', 'recurring_interval_count') }}, 4
                )
            else 0
        end as mrr_local,
        billing_account
    from valued
)

select * from final
