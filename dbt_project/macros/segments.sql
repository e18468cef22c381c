{#- The customers whose rows of an incremental per-customer growth model (int_customer_segments_monthly)
    may differ since its last build: rows of int_customer_mrr_monthly rewritten by a newer engine batch,
    customers the engine's ledger listed since (also those whose history vanished), customers loaded
    again from Stripe (metadata), and customers whose MRR differs from the engine's in the latest months
    (a month ended, a rate changed). `this` carries source_batch_at and customer_synced_at. -#}
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
    union
    -- rows the engine rewrites without listing their customers: when a month has ended, every customer's
    -- rows from that month on (the month end's values; a row for the new month), and today's rows of a
    -- currency whose rate changed. Both lie in the months from this model's newest on: compared there.
    select coalesce(engine.customer_id, segments.customer_id)
    from (
        select customer_id, month, mrr
        from {{ customer_months }}
        where month >= (select max(month) from {{ this }}) and mrr is not null
    ) as engine
    full join (
        select customer_id, month, mrr
        from {{ this }}
        where month >= (select max(month) from {{ this }})
    ) as segments
        on engine.customer_id = segments.customer_id
        and engine.month = segments.month
    where engine.mrr is distinct from segments.mrr
{%- endmacro %}

{#- Pre-hook of int_customer_segments_monthly (an incremental build): fix the set of changed customers
    (temp_key_set: the model's SQL reads pg_temp.segments_changed_customers), keep their rows as they were
    (pg_temp.segments_previous, for growth_record_changed_months) and drop them (all their months, also of
    customers with none left). -#}
{% macro growth_segments_prepare(customer_months, batches, customers) -%}
    {%- if is_incremental() -%}
    {{ temp_key_set('segments_changed_customers', '(' ~ growth_changed_customers(customer_months, batches, customers) ~ ')') }};
    drop table if exists pg_temp.segments_previous;
    create temporary table segments_previous as
        select * from {{ this }} where customer_id in (select customer_id from pg_temp.segments_changed_customers);
    delete from {{ this }} where customer_id in (select customer_id from pg_temp.segments_changed_customers)
    {%- endif -%}
{%- endmacro %}

{#- The ledger of the months whose rows of int_customer_segments_monthly changed (METRICS.md "Incremental
    builds"): `<model>__changed_months` (changed_at, month), beside the model. Each build of the model
    appends the months in which a row was added, removed or got another value (comparing the rewritten
    customers' rows with what they were: a customer recomputed because of a new invoice today changes the
    current month only); a full build starts it again with every month. The month aggregates above it
    (int_segment_mrr_monthly, int_cohort_segment_retention) recompute only the months listed since their
    own last build. -#}
{% macro growth_changed_months_ledger() -%}
    {%- set segments = this if this.identifier == 'int_customer_segments_monthly' else ref('int_customer_segments_monthly') -%}
    {{- return(api.Relation.create(database=segments.database, schema=segments.schema,
                                   identifier='int_customer_segments_monthly__changed_months')) -}}
{%- endmacro %}

{#- Post-hook of int_customer_segments_monthly: append the months that changed to the ledger. -#}
{% macro growth_record_changed_months(compared_columns) -%}
    {%- set ledger = growth_changed_months_ledger() -%}
    create table if not exists {{ ledger }} (changed_at timestamptz not null, month date not null);
    {%- if is_incremental() %}
    insert into {{ ledger }} (changed_at, month)
    select distinct statement_timestamp(), coalesce(now_rows.month, previous.month)
    from (
        select * from {{ this }} where customer_id in (select customer_id from pg_temp.segments_changed_customers)
    ) as now_rows
    full join pg_temp.segments_previous as previous
        on now_rows.customer_id = previous.customer_id
        and now_rows.month = previous.month
    where row({% for c in compared_columns %}now_rows.{{ c }}{% if not loop.last %}, {% endif %}{% endfor %})
        is distinct from row({% for c in compared_columns %}previous.{{ c }}{% if not loop.last %}, {% endif %}{% endfor %})
    {%- else %}
    truncate {{ ledger }};
    insert into {{ ledger }} (changed_at, month)
    select distinct statement_timestamp(), month from {{ this }}
    {%- endif %}
{%- endmacro %}

{#- Pre-hook of a month aggregate over int_customer_segments_monthly: the months to recompute
    (pg_temp.segment_months_to_build): in an incremental build, those the ledger lists since the build
    that wrote this model's newest ledger_through; `extra` deletes more rows (a condition on this). -#}
{% macro growth_months_prepare(extra_condition=none) -%}
    {%- if is_incremental() -%}
    {{ temp_key_set('segment_months_to_build', "(select distinct month from " ~ growth_changed_months_ledger()
        ~ " where changed_at > (select coalesce(max(ledger_through), '-infinity') from " ~ this ~ "))") }};
    delete from {{ this }} where month in (select month from pg_temp.segment_months_to_build)
        {%- if extra_condition %} or {{ extra_condition }}{% endif %}
    {%- endif -%}
{%- endmacro %}

{#- The newest ledger entry a build of a month aggregate took in (its rows' ledger_through). -#}
{% macro growth_ledger_through() -%}
    (select max(changed_at) from {{ growth_changed_months_ledger() }})
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

{#- The two columns that name a row of a grouping-sets aggregate over the segment dimensions: `dimension`
    (the dimension's name) and `segment` (its value). -#}
{% macro segment_labels(dimensions) -%}
    case
        {%- for name, expression in dimensions %}
        when grouping({{ expression }}) = 0 then '{{ name }}'
        {%- endfor %}
    end as dimension,
    coalesce(
        {%- for name, expression in dimensions %}
        case when grouping({{ expression }}) = 0 then {{ expression }} end{% if not loop.last %},{% endif %}
        {%- endfor %}
    ) as segment
{%- endmacro %}

{#- `grouping sets ((keys, dimension 1), (keys, dimension 2), ...)`: one aggregate per dimension. -#}
{% macro segment_grouping_sets(dimensions, keys) -%}
    grouping sets (
        {%- for name, expression in dimensions %}
        ({{ keys }}, {{ expression }}){% if not loop.last %},{% endif %}
        {%- endfor %}
    )
{%- endmacro %}
