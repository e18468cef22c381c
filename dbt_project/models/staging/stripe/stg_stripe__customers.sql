-- Incremental, not a view: customers are read by several models and tests every build, so their JSON is
-- parsed once, and later builds parse only the customers loaded since the last build (a re-fetched one
-- replaces its row).
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='customer_id',
    on_schema_change='fail',
    indexes=[{'columns': ['customer_id'], 'unique': True}, {'columns': ['synced_at']}],
    post_hook='{{ analyze_if_stale() }}',
) }}

with

source as (
    select * from {{ source('stripe', 'customers') }}
    {% if is_incremental() -%}
    where synced_at > {{ synced_watermark() }}
    {%- endif %}
),

final as (
    select
        -- ids
        id as customer_id,
        account as billing_account,
        -- attributes
        data ->> 'email' as email,
        data ->> 'name' as customer_name,
        lower(data ->> 'currency') as currency,
        data -> 'address' ->> 'country' as country,
        data -> 'metadata' as metadata,
        coalesce((data ->> 'deleted')::boolean, false) as is_deleted,
        coalesce((data ->> 'livemode')::boolean, false) as is_livemode,
        -- the default card, when the list was read with it expanded (a bare id carries no card)
        (
            make_date(
                (data -> 'invoice_settings' -> 'default_payment_method' -> 'card' ->> 'exp_year')::int,
                (data -> 'invoice_settings' -> 'default_payment_method' -> 'card' ->> 'exp_month')::int,
                1
            ) + interval '1 month' - interval '1 day'
        )::date as default_card_expires_on,
        -- when the default payment method was made (a card the customer updated after a failed payment)
        {{ from_unix("data -> 'invoice_settings' -> 'default_payment_method' ->> 'created'") }}
            as default_payment_method_created_at,
        -- timestamps
        created as created_at,
        synced_at
    from source
)

select * from final
