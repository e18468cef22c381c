{#- Personal data in the marts (README "BI tools"): a mart column marked `config: {meta: {personal_data: true}}`
    in its _<folder>__models.yml is not readable by BI logins unless they were created with
    `saas-metrics db bi-role --include-personal-data`.

    BI logins read the marts through the group role `saas_metrics_bi` (saas_metrics/warehouse.py
    BI_GROUP), which default privileges give SELECT on every table and view dbt creates in `marts`. This
    post-hook runs in the transaction that (re)creates the relation, so the group never sees a rebuilt
    relation whole: on a mart with personal columns it replaces the group's table-level SELECT by a
    column-level SELECT of the other columns. Nothing happens until a BI role exists. -#}
{% macro personal_columns(node) -%}
    {%- set found = [] -%}
    {%- for name, column in node.columns.items() -%}
        {%- set meta = column.get('meta') or {} -%}
        {%- set config_meta = (column.get('config') or {}).get('meta') or {} -%}
        {%- if meta.get('personal_data') or config_meta.get('personal_data') -%}
            {%- do found.append(name) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(found) }}
{%- endmacro %}

{% macro restrict_personal_columns() -%}
    {%- set personal = personal_columns(model) -%}
    {%- if personal -%}
    {%- set readable = [] -%}
    {%- for name in model.columns if name not in personal -%}
        {%- do readable.append(adapter.quote(name)) -%}
    {%- endfor -%}
do $$
begin
    if exists (select from pg_roles where rolname = 'saas_metrics_bi') then
        revoke select on {{ this }} from saas_metrics_bi;
        {%- if readable %}
        grant select ({{ readable | join(', ') }}) on {{ this }} to saas_metrics_bi;
        {%- endif %}
    end if;
end
$$
    {%- else -%}
    select 1
    {%- endif -%}
{%- endmacro %}
