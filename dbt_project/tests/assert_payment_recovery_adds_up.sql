-- Blocking: every failed invoice has one outcome, and recovered ones one method (METRICS.md "Failed payments and
-- recovery").
{{ config(severity='error') }}

with

recovery as (
    select * from {{ ref('payment_recovery') }}
),

final as (
    select
        month,
        failed_invoices,
        recovered_invoices,
        churned_invoices,
        in_dunning_invoices,
        lost_invoices
    from recovery
    where failed_invoices <> recovered_invoices + churned_invoices + in_dunning_invoices + lost_invoices
        or recovered_invoices <> recovered_by_retry + recovered_by_card_update
)

select * from final
