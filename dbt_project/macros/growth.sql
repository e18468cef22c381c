{#- The customers whose rows of an incremental per-customer growth model (int_customer_segments_monthly)
    may differ since its last build: rows of int_customer_mrr_monthly rewritten by a newer engine batch,
    customers the engine's ledger listed since (also those whose history vanished), customers loaded
    again from Stripe (metadata). `this` carries source_batch_at and customer_synced_at. -#}
{% macro growth_changed_customers(customer_months, batches, customers) -%}
    select customer_id
    from {{ customer_months }}
    where engine_batch_at > (select coalesce(max(source_batch_at), '-infinity') from {{ this }})
    union
    select customer_id
    from {{ batches }}
    where batch_at > (select coalesce(max(source_batch_at), '-infinity') from {{ this }})
        and customer_id is not null
    union
    select customer_id
    from {{ customers }}
    where synced_at > (select coalesce(max(customer_synced_at), '-infinity') from {{ this }})
{%- endmacro %}

{#- Pre-hook: drop the rows of those customers (all their months, also of customers with none left). -#}
{% macro growth_delete_changed(customer_months, batches, customers) -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where customer_id in ({{ growth_changed_customers(customer_months, batches, customers) }})
    {%- endif -%}
{%- endmacro %}

{#- The segment dimensions (METRICS.md "Segments"): (name, SQL expression over int_customer_segments_monthly),
    the built-in ones and one per customer metadata key of var segment_metadata_keys. -#}
{% macro segment_dimensions() -%}
    {%- set dimensions = [
        ('plan', 'plan'),
        ('billing_interval', 'billing_interval'),
        ('country', 'country'),
        ('acquisition_channel', 'acquisition_channel'),
        ('mrr_band', 'mrr_band'),
    ] -%}
    {%- for key in var('segment_metadata_keys') -%}
        {%- do dimensions.append(('metadata.' ~ key, "(segment_metadata ->> '" ~ key ~ "')")) -%}
    {%- endfor -%}
    {{ return(dimensions) }}
{%- endmacro %}
