{#- Incremental builds of the large invoice tables (stg_stripe__invoices, stg_stripe__invoice_lines,
    int_invoice_lines_classified). -#}

{#- The newest synced_at already staged: rows loaded after it (a later load stamps a later time) are
    parsed; a row parsed again replaces itself (delete+insert on the key), never duplicates. -#}
{% macro staging_watermark() -%}
    (select coalesce(max(synced_at), '-infinity'::timestamp) from {{ this }})
{%- endmacro %}

{#- Before an incremental build of stg_stripe__invoice_lines: drop the staged lines of every invoice
    loaded since the last build, so lines an invoice no longer has (a draft edited) go too, even when
    it has none left. -#}
{% macro delete_lines_of_refetched_invoices() -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where invoice_id in (
        select id from {{ source('stripe', 'invoices') }}
        where synced_at > {{ staging_watermark() }}
    )
    {%- endif -%}
{%- endmacro %}

{#- Before an incremental build of int_invoice_lines_classified: drop the classified lines of every
    invoice loaded since the last build (an invoice left with no line would otherwise keep its old ones). -#}
{% macro delete_classified_lines_of_refetched_invoices() -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where invoice_id in (
        select invoice_id from {{ ref('stg_stripe__invoices') }}
        where synced_at > (select coalesce(max(synced_at), '-infinity'::timestamp) from {{ this }})
    )
    {%- endif -%}
{%- endmacro %}
