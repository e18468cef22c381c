{#- Incremental builds of the large invoice tables (stg_stripe__invoices, stg_stripe__invoice_lines,
    int_invoice_lines_classified). -#}

{#- The newest synced_at already in this model: rows loaded after it (a later load stamps a later time)
    are processed; a row processed again replaces itself (delete+insert on the key), never duplicates. -#}
{% macro synced_watermark() -%}
    (select coalesce(max(synced_at), '-infinity'::timestamp) from {{ this }})
{%- endmacro %}

{#- Pre-hook of an incremental build of a model of invoice lines: drop its lines of every invoice loaded
    since the last build (`invoices`, keyed by `id_column`), so lines an invoice no longer has (a draft
    edited) go too, even when it has none left. -#}
{% macro delete_lines_of_refetched_invoices(invoices, id_column) -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where invoice_id in (select {{ id_column }} from {{ invoices }} where synced_at > {{ synced_watermark() }})
    {%- endif -%}
{%- endmacro %}
