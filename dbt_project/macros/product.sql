{#- Helpers of the product-engagement models (METRICS.md "Product engagement"). -#}
{#- ('a', 'b') from a list var, for `in` filters; an empty list matches nothing. -#}
{% macro sql_list(values) -%}
    {%- if values | length == 0 -%}
        (null)
    {%- else -%}
        ({% for value in values %}'{{ value | replace("'", "''") }}'{{ ", " if not loop.last }}{% endfor %})
    {%- endif -%}
{%- endmacro %}

{#- METRICS.md "Account health": the bands of the 0-100 score. -#}
{% macro health_band(score) -%}
    (case
        when {{ score }} is null then null
        when {{ score }} <= 30 then 'at_risk'
        when {{ score }} <= 60 then 'needs_attention'
        when {{ score }} <= 80 then 'healthy'
        else 'champion'
    end)
{%- endmacro %}

{#- The product events an incremental daily rollup (re)computes: on a full build all of them; on an
    incremental one every event of the UTC days that rows of loads newer than the rollup's
    max_load_id fall on (late events included, however late), so those whole days are replaced. -#}
{% macro product_events_of_touched_days() -%}
    {{ return(adapter.dispatch('product_events_of_touched_days')()) }}
{%- endmacro %}

{#- PostgreSQL's (Spark's is in lake.sql). -#}
{% macro default__product_events_of_touched_days() -%}
    {%- if is_incremental() -%}
    touched_days as (
        select distinct activity_date
        from {{ ref('stg_product__events') }}
        where load_id > (select coalesce(max(max_load_id), '') from {{ this }})
    ),
    {%- endif %}

    events as (
        select * from {{ ref('stg_product__events') }}
        {% if is_incremental() -%}
        where occurred_at >= (select min(activity_date) from touched_days)::timestamp at time zone 'UTC'
            and activity_date in (select activity_date from touched_days)
        {%- endif %}
    )
{%- endmacro %}
