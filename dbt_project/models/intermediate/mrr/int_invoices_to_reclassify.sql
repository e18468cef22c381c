-- A key set of int_invoice_lines_classified (macros/incremental.sql, "Key sets"), computed just before its
-- incremental build: the invoices whose lines it reads and classifies again (replacing them whole,
-- delete+insert on invoice_id): those loaded since its last build (int_refetched_invoices), and every
-- invoice of the subscriptions it reclassifies (int_subscriptions_to_reclassify), found by the invoice's
-- subscription or by a line's.
with

refetched_invoices as (
    select * from {{ ref('int_refetched_invoices') }}
),

subscriptions_to_reclassify as (
    select * from {{ ref('int_subscriptions_to_reclassify') }}
),

invoices as (
    select * from {{ ref('stg_stripe__invoices') }}
),

invoice_lines as (
    select * from {{ ref('stg_stripe__invoice_lines') }}
),

final as (
    select invoice_id
    from refetched_invoices
    union
    select invoices.invoice_id
    from invoices
    inner join subscriptions_to_reclassify
        on invoices.subscription_id = subscriptions_to_reclassify.subscription_id
    union
    select invoice_lines.invoice_id
    from invoice_lines
    inner join subscriptions_to_reclassify
        on invoice_lines.subscription_id = subscriptions_to_reclassify.subscription_id
)

select * from final
