{#- Pre-hook of int_customer_segments_monthly (an incremental build): drop every row (all months) of the
    customers it rebuilds, the key set int_segment_customers_to_rebuild, also of customers with none left;
    int_segment_rows_before_rebuild keeps them as they were, for growth_record_changed_months. -#}
{% macro growth_segments_prepare() -%}
    {{ delete_keys_of('int_segment_customers_to_rebuild', 'customer_id') }}
{%- endmacro %}

{#- The ledger of the months whose rows of int_customer_segments_monthly changed (METRICS.md "Incremental
    builds"): `<model>__changed_months` (changed_at, month), beside the model. Each build of the model
    appends the months in which a row was added, removed or got another value (comparing the rewritten
    customers' rows with what they were, kept by int_segment_rows_before_rebuild: a customer recomputed
    because of a new invoice today changes the current month only); a full build starts it again with
    every month. The month aggregates above it (int_segment_mrr_monthly, int_cohort_segment_retention)
    recompute only the months listed since their own last build (int_segment_months_to_rebuild). -#}
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
        select * from {{ this }}
        where customer_id in (select customer_id from {{ ref('int_segment_customers_to_rebuild') }})
    ) as now_rows
    full join {{ ref('int_segment_rows_before_rebuild') }} as previous
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

{#- The months a month aggregate over int_customer_segments_monthly recomputes in an incremental build (its
    key set int_segment_months_to_rebuild: the months the ledger lists since its last build), as a query. -#}
{% macro growth_months_to_rebuild() -%}
    select month from {{ ref('int_segment_months_to_rebuild') }} where model_name = '{{ model.name }}'
{%- endmacro %}

{#- Pre-hook of a month aggregate (an incremental build): drop its rows of the months it recomputes, and
    with `also_column` (cohort_month) every row whose value there is one of them. -#}
{% macro growth_months_prepare(also_column=none) -%}
    {%- if is_incremental() -%}
    delete from {{ this }} where month in ({{ growth_months_to_rebuild() }})
        {%- if also_column %} or {{ also_column }} in ({{ growth_months_to_rebuild() }}){% endif %}
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
        ('billing_account', 'billing_account'),
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
