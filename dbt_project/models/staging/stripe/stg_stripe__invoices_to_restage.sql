-- The key set of stg_stripe__invoice_lines (macros/incremental.sql, "Key sets"): the invoices whose lines
-- its next incremental build stages again, computed just before it: every invoice loaded since its last
-- build (synced_at after the newest it holds) and every invoice with a line loaded since. Empty when that
-- build is a full one (no table yet, --full-refresh): it stages everything.
{{ config(materialized='table', post_hook='{{ analyze_if_stale() }}') }}
{%- set invoice_lines = previous_build_of('stg_stripe__invoice_lines') %}
{%- set watermark = synced_watermark(invoice_lines) if invoice_lines is not none else "'infinity'::timestamp" %}

with

invoices as (
    select * from {{ source('stripe', 'invoices') }}
),

invoice_lines as (
    select * from {{ source('stripe', 'invoice_lines') }}
),

-- the newest load stg_stripe__invoice_lines has staged (none to stage again on a full build)
watermark as (
    select {{ watermark }} as synced_at
),

final as (
    select invoices.id as invoice_id
    from invoices
    where invoices.synced_at > (select watermark.synced_at from watermark)
    union
    select invoice_lines.invoice_id
    from invoice_lines
    where invoice_lines.synced_at > (select watermark.synced_at from watermark)
)

select * from final
