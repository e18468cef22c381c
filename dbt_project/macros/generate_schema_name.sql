{#- Schemas are a public contract: staging, intermediate, marts - exactly, whatever the target.
    (dbt's default would prefix them with the target schema.) The marts are built into marts_build and
    published into marts by publish_marts when the whole build passed (macros/publish.sql). -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- elif custom_schema_name | trim == marts_schema() -%}
        {{ marts_build_schema() }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
