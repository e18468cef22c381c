-- A key set of int_invoice_lines_classified (macros/incremental.sql, "Key sets"), computed just before its
-- incremental build: the subscriptions whose every line it classifies again (a line's value depends on
-- the other cycle lines of its period): those of the invoices loaded since its last build
-- (int_refetched_invoices) and of their lines, and those with a proration invoice item loaded since.
{%- set lines_classified = previous_build_of('int_invoice_lines_classified') %}
{%- set watermark = synced_watermark(lines_classified) if lines_classified is not none else "'infinity'::timestamp" %}

with

refetched_invoices as (
    select * from {{ ref('int_refetched_invoices') }}
),

invoice_items as (
    select * from {{ ref('stg_stripe__invoice_items') }}
),

invoice_lines as (
    select * from {{ ref('stg_stripe__invoice_lines') }}
),

-- the newest load int_invoice_lines_classified has taken in (none to take again on a full build)
watermark as (
    select {{ watermark }} as synced_at
),

final as (
    select subscription_id
    from refetched_invoices
    where subscription_id is not null
    union
    select subscription_id
    from invoice_items
    where synced_at > (select watermark.synced_at from watermark) and subscription_id is not null
    union
    select invoice_lines.subscription_id
    from invoice_lines
    inner join refetched_invoices
        on invoice_lines.invoice_id = refetched_invoices.invoice_id
    where invoice_lines.subscription_id is not null
)

select * from final
