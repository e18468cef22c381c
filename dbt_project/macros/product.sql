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
