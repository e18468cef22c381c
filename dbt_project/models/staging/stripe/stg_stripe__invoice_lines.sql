-- Invoice lines in the current shape (pricing.price_details, parent.subscription_item_details,
-- discount_amounts, taxes, quantity_decimal) and the legacy one (price/plan, type, proration, subscription,
-- tax_amounts, quantity). unit_amount_cents is the full unit price a line names (its embedded legacy
-- price or plan, else `pricing.unit_amount_decimal` of a line that is not a proration: on a proration that
-- field is null in flexible billing mode and the prorated amount otherwise, so it is never read there).
-- Incremental, not a view like the other staging models: a million and more invoice lines are read
-- by several models and tests, so their JSON is parsed once, and later builds parse only the lines of
-- invoices loaded since the last build. A re-fetched invoice replaces all its lines (as the load
-- does), including lines it no longer has: the pre-hook deletes the lines of every re-fetched invoice.
-- (An invoice with a line loaded again but not itself is re-staged whole as well.) Which invoices those
-- are is the key set stg_stripe__invoices_to_restage, built just before (macros/incremental.sql).
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='invoice_id',
    on_schema_change='fail',
    indexes=[
        {'columns': ['invoice_id', 'invoice_line_id'], 'unique': True},
        {'columns': ['subscription_id']},
        {'columns': ['synced_at']},
    ],
    pre_hook="{{ delete_keys_of('stg_stripe__invoices_to_restage', 'invoice_id') }}",
    post_hook='{{ analyze_if_stale() }}',
) }}

-- depends_on: {{ key_set('stg_stripe__invoices_to_restage') }}

with

source as (
    select * from {{ source('stripe', 'invoice_lines') }}
    {% if is_incremental() -%}
    -- the invoices loaded since the last build, and those with a line loaded since (the pre-hook
    -- deleted their lines: a re-fetched invoice replaces all its lines)
    where invoice_id in (select invoice_id from {{ ref('stg_stripe__invoices_to_restage') }})
    {%- endif %}
),

final as (
    select
        -- ids
        id as invoice_line_id,
        invoice_id,
        account as billing_account,
        coalesce(
            data -> 'parent' -> 'subscription_item_details' ->> 'subscription',
            data -> 'parent' -> 'invoice_item_details' ->> 'subscription',
            data ->> 'subscription'
        ) as subscription_id,
        coalesce(
            data -> 'parent' -> 'subscription_item_details' ->> 'subscription_item',
            data ->> 'subscription_item'
        ) as subscription_item_id,
        -- the invoice item a line invoices (a proration left pending until this invoice); legacy lines of
        -- invoice items have the item's id as their own
        coalesce(
            data -> 'parent' -> 'subscription_item_details' ->> 'invoice_item',
            data -> 'parent' -> 'invoice_item_details' ->> 'invoice_item',
            data ->> 'invoice_item',
            case when data ->> 'type' = 'invoiceitem' and id like 'ii\_%' then id end
        ) as invoice_item_id,
        coalesce(
            data -> 'pricing' -> 'price_details' ->> 'price',
            data -> 'price' ->> 'id',
            data -> 'plan' ->> 'id'
        ) as price_id,
        -- kind
        case
            when data -> 'parent' ->> 'type' = 'subscription_item_details' then 'subscription'
            when data -> 'parent' ->> 'type' = 'invoice_item_details' then 'invoiceitem'
            else data ->> 'type'
        end as line_type,
        coalesce(
            (data -> 'parent' -> 'subscription_item_details' ->> 'proration')::boolean,
            (data -> 'parent' -> 'invoice_item_details' ->> 'proration')::boolean,
            (data ->> 'proration')::boolean,
            false
        ) as is_proration,
        data ->> 'description' as description,
        lower(data ->> 'currency') as currency,
        coalesce((data ->> 'quantity_decimal')::numeric, (data ->> 'quantity')::numeric, 1) as quantity,
        -- amounts (minor units)
        (data ->> 'amount')::bigint as amount_cents,
        coalesce(
            (data -> 'price' ->> 'unit_amount_decimal')::numeric,
            (data -> 'plan' ->> 'amount_decimal')::numeric,
            (data -> 'plan' ->> 'amount')::numeric,
            case
                when not coalesce(
                        (data -> 'parent' -> 'subscription_item_details' ->> 'proration')::boolean,
                        (data -> 'parent' -> 'invoice_item_details' ->> 'proration')::boolean,
                        (data ->> 'proration')::boolean,
                        false
                    )
                then (data -> 'pricing' ->> 'unit_amount_decimal')::numeric
            end
        ) as unit_amount_cents,
        coalesce(
            (
                select sum((discount ->> 'amount')::bigint)
                from jsonb_array_elements(source.data -> 'discount_amounts') as discount
            ),
            0
        ) as discount_cents,
        -- each discount's amount and id (null when none): the `stripe` methodology counts some only
        case
            when jsonb_typeof(data -> 'discount_amounts') = 'array' then
                case when jsonb_array_length(data -> 'discount_amounts') > 0 then data -> 'discount_amounts' end
        end as discount_amounts,
        coalesce(
            (
                select sum((tax ->> 'amount')::bigint)
                from
                    jsonb_array_elements(
                        case when jsonb_typeof(source.data -> 'taxes') = 'array' then source.data -> 'taxes' end
                    ) as tax
                where tax ->> 'tax_behavior' = 'inclusive'
            ),
            (
                select sum((tax ->> 'amount')::bigint)
                from
                    jsonb_array_elements(
                        case
                            when jsonb_typeof(source.data -> 'tax_amounts') = 'array' then source.data -> 'tax_amounts'
                        end
                    ) as tax
                where (tax ->> 'inclusive')::boolean
            ),
            0
        ) as inclusive_tax_cents,
        -- timestamps
        {{ from_unix("data -> 'period' ->> 'start'") }} as period_start_at,
        {{ from_unix("data -> 'period' ->> 'end'") }} as period_end_at,
        synced_at
    from source
)

select * from final
