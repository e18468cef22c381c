-- Invoices. The subscription moved to parent.subscription_details in API 2025-03-31.
-- Incremental, not a view like the other staging models: a million and more invoices are read by
-- several models and tests, so their JSON is parsed once, and later builds parse only the invoices
-- loaded since the last build (synced_at; a re-fetched invoice replaces its row).
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='invoice_id',
    on_schema_change='fail',
    indexes=[
        {'columns': ['invoice_id'], 'unique': True},
        {'columns': ['subscription_id']},
        {'columns': ['customer_id']},
        {'columns': ['synced_at']},
    ],
    post_hook='{{ analyze_if_stale() }}',
) }}

with

source as (
    select * from {{ source('stripe', 'invoices') }}
    {% if is_incremental() -%}
    where synced_at > {{ synced_watermark() }}
    {%- endif %}
),

final as (
    select
        -- ids
        id as invoice_id,
        account as billing_account,
        coalesce(data -> 'customer' ->> 'id', data ->> 'customer') as customer_id,
        coalesce(
            data -> 'parent' -> 'subscription_details' ->> 'subscription',
            data -> 'subscription' ->> 'id',
            data ->> 'subscription'
        ) as subscription_id,
        -- attributes
        data ->> 'status' as status,
        data ->> 'billing_reason' as billing_reason,
        data ->> 'collection_method' as collection_method,
        -- the payment attempts of the retry schedule (0: never attempted, as a draft or a paused collection's)
        coalesce((data ->> 'attempt_count')::integer, 0) as attempt_count,
        lower(data ->> 'currency') as currency,
        -- amounts (minor units, as Stripe sends them)
        (data ->> 'subtotal')::bigint as subtotal_cents,
        (data ->> 'total')::bigint as total_cents,
        (data ->> 'amount_due')::bigint as amount_due_cents,
        (data ->> 'amount_paid')::bigint as amount_paid_cents,
        coalesce(
            (select sum((tax ->> 'amount')::bigint) from jsonb_array_elements(source.data -> 'total_taxes') as tax),
            (data ->> 'tax')::bigint,
            0
        ) as tax_cents,
        -- timestamps
        created as created_at,
        {{ from_unix("data -> 'status_transitions' ->> 'finalized_at'") }} as finalized_at,
        {{ from_unix("data -> 'status_transitions' ->> 'paid_at'") }} as paid_at,
        {{ from_unix("data -> 'status_transitions' ->> 'marked_uncollectible_at'") }} as marked_uncollectible_at,
        {{ from_unix("data -> 'status_transitions' ->> 'voided_at'") }} as voided_at,
        {{ from_unix("data ->> 'period_start'") }} as period_start_at,
        {{ from_unix("data ->> 'period_end'") }} as period_end_at,
        synced_at
    from source
)

select * from final
