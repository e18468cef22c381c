-- A key set of int_invoice_lines_classified (macros/incremental.sql, "Key sets"), computed just before its
-- incremental build: the invoices loaded since its last build (synced_at after the newest it holds), with
-- their subscriptions. That build drops their lines first (an edited draft may have lost some) and
-- classifies again every line of the subscriptions they touch (int_subscriptions_to_reclassify). Empty
-- when that build is a full one (no table yet, --full-refresh).
{%- set lines_classified = previous_build_of('int_invoice_lines_classified') %}
{%- set watermark = synced_watermark(lines_classified) if lines_classified is not none else "'infinity'::timestamp" %}

with

invoices as (
    select * from {{ ref('stg_stripe__invoices') }}
),

-- the newest load int_invoice_lines_classified has taken in (none to take again on a full build)
watermark as (
    select {{ watermark }} as synced_at
),

final as (
    select
        invoice_id,
        subscription_id
    from invoices
    where synced_at > (select watermark.synced_at from watermark)
)

select * from final
