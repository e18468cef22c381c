{#- Lake mode (README "Lake mode", METRICS.md "Product engagement"): the product models that scan events
    (stg_product__events, int_product_user_days, int_product_account_event_days) have one body for
    PostgreSQL and Spark; what differs between the two goes through these dispatched macros. -#}

{#- The text of one key of a JSON object column: PostgreSQL's jsonb, the lake's JSON text. -#}
{% macro json_text(column, key) -%}
    {{ return(adapter.dispatch('json_text')(column, key)) }}
{%- endmacro %}

{% macro default__json_text(column, key) -%}
    {{ column }} ->> '{{ key }}'
{%- endmacro %}

{% macro spark__json_text(column, key) -%}
    get_json_object({{ column }}, '$.{{ key }}')
{%- endmacro %}

{#- The UTC day of an event. In the lake it is the partition column the loader wrote (the same UTC day,
    ingestion/product/lake.py): filtering on it reads only the partitions of those days. -#}
{% macro event_date_of(column) -%}
    {{ return(adapter.dispatch('event_date_of')(column)) }}
{%- endmacro %}

{% macro default__event_date_of(column) -%}
    ({{ column }} at time zone 'UTC')::date
{%- endmacro %}

{% macro spark__event_date_of(column) -%}
    event_date
{%- endmacro %}

{#- Each event once. PostgreSQL's raw table is merged on event_id by the loader: nothing to do. The lake
    never rewrites a file, so an event delivered twice in one load is there twice; the latest delivery of
    each (event_date, event_id) is kept (as PostgreSQL's merge keeps the latest). By day, so that a build
    of some days reads only their partitions. -#}
{% macro latest_delivery_of_events(relation) -%}
    {{ return(adapter.dispatch('latest_delivery_of_events')(relation)) }}
{%- endmacro %}

{% macro default__latest_delivery_of_events(relation) -%}
    select * from {{ relation }}
{%- endmacro %}

{% macro spark__latest_delivery_of_events(relation) -%}
    select * from (
        select
            *,
            row_number() over (partition by event_date, event_id order by _dlt_load_id desc, _dlt_id asc) as delivery_rank
        from {{ relation }}
    ) as deliveries
    where delivery_rank = 1
{%- endmacro %}

{#- The rollups' incremental build on Spark (product.sql has PostgreSQL's): the days that rows of loads newer
    than the rollup's max_load_id fall on, found in the lake's own columns (its load id and its partition
    column: a read of two columns, pruned by the files' statistics), then every event of those days, as a
    list of partitions that Spark prunes to; insert_overwrite replaces exactly those partitions. -#}
{% macro spark__product_events_of_touched_days() -%}
    {%- set days = [] -%}
    {%- if is_incremental() and execute -%}
        {%- set watermark = run_query("select coalesce(max(max_load_id), '') from " ~ this).columns[0].values()[0] -%}
        {%- set touched = run_query(
            "select distinct event_date from " ~ source('product', 'events')
            ~ " where _dlt_load_id > '" ~ watermark ~ "' order by event_date"
        ) -%}
        {%- for day in touched.columns[0].values() -%}
            {%- do days.append(day) -%}
        {%- endfor -%}
        {{ log(this.identifier ~ ": " ~ days | length ~ " day(s) touched by loads after " ~ watermark, info=true) }}
    {%- endif %}
    events as (
        select * from {{ ref('stg_product__events') }}
        {% if is_incremental() -%}
        where activity_date in (
            {%- for day in days -%}date '{{ day }}'{{ ", " if not loop.last }}{%- else -%}null{%- endfor -%}
        )
        {%- endif %}
    )
{%- endmacro %}

{#- Statistics are PostgreSQL's concern (incremental.sql); Spark plans from the files. -#}
{% macro spark__analyze_if_stale() -%}
{%- endmacro %}
