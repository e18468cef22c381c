{#- How a build replaces what the last one built, in PostgreSQL (README "Operating it in Dagster").

    dbt's own view materialization renames the old view away and drops it WITH CASCADE once the new one is in
    place, and its table materialization does the same with the old table. The cascade drops every view that
    read the old relation (billing_customers reads three staging views; customer_timeline reads nine models),
    and two threads dropping two parents of the same views lock those views in different orders: PostgreSQL
    then finds a deadlock and fails one model, and with it the build (seen in a refresh, "deadlock detected"
    on two views' rules). So here:

    - A view whose columns stay as they were (same names and types in the same order, new ones only at the
      end: what CREATE OR REPLACE VIEW accepts) is replaced in place: the views reading it stay, and a build
      of some models only (`--select`) no longer drops the views downstream of them. The new definition is
      first created beside the old one to compare the columns PostgreSQL gives it; when they changed (a model
      edited by an upgrade), the view is swapped as dbt swaps it, with the cascade.
    - Every drop made by a build waits for its turn (one transaction-level advisory lock, taken first): two
      cascades never interleave, so they cannot deadlock. A drop's transaction holds nothing else when it
      waits, and builds outside dbt (publishing, Python marts) take no such lock. -#}

{% macro drop_lock_sql() -%}
    select pg_advisory_xact_lock(hashtext('saas_metrics: a build drops a relation'))
{%- endmacro %}

{% macro postgres__drop_relation(relation) -%}
    {% call statement('drop_relation', auto_begin=False) -%}
        {{ drop_lock_sql() }};
        {{ get_drop_sql(relation) }}
    {%- endcall %}
{% endmacro %}

{#- True when `candidate` (a view just created) can replace the view `existing` in place: each column of
    `existing` is in `candidate` at the same position, with the same name, type, type modifier and collation. -#}
{% macro view_keeps_columns(existing, candidate) -%}
    {%- set sql -%}
        with columns_of as (
            select attrelid, attnum, attname, atttypid, atttypmod, attcollation
            from pg_catalog.pg_attribute
            where attnum > 0 and not attisdropped
        )
        select count(*) as changed
        from (
            select attnum, attname, atttypid, atttypmod, attcollation
            from columns_of where attrelid = '{{ existing.include(database=false) }}'::regclass
            except
            select attnum, attname, atttypid, atttypmod, attcollation
            from columns_of where attrelid = '{{ candidate.include(database=false) }}'::regclass
        ) as changed_columns
    {%- endset -%}
    {{ return(run_query(sql).columns[0].values()[0] == 0) }}
{%- endmacro %}

{%- materialization view, adapter='postgres' -%}

    {%- set existing_relation = load_cached_relation(this) -%}
    {%- set target_relation = this.incorporate(type='view') -%}
    {%- set intermediate_relation = make_intermediate_relation(target_relation) -%}
    {%- set preexisting_intermediate_relation = load_cached_relation(intermediate_relation) -%}
    {%- set backup_relation_type = 'view' if existing_relation is none else existing_relation.type -%}
    {%- set backup_relation = make_backup_relation(target_relation, backup_relation_type) -%}
    {%- set preexisting_backup_relation = load_cached_relation(backup_relation) -%}
    {%- set grant_config = config.get('grants') -%}

    {{ run_hooks(pre_hooks, inside_transaction=False) }}

    {{ drop_relation_if_exists(preexisting_intermediate_relation) }}
    {{ drop_relation_if_exists(preexisting_backup_relation) }}

    {{ run_hooks(pre_hooks, inside_transaction=True) }}

    {% call statement('main') -%}
        {{ get_create_view_as_sql(intermediate_relation, sql) }}
    {%- endcall %}

    {%- set in_place = existing_relation is not none and existing_relation.is_view
        and view_keeps_columns(existing_relation, intermediate_relation) -%}
    {% if in_place %}
        {#- the views reading it keep reading it; the one beside it, just created, has no reader -#}
        {% call statement('replace_in_place') -%}
            {{ get_replace_view_sql(target_relation, sql) }}
            drop view {{ intermediate_relation }};
        {%- endcall %}
    {% else %}
        {% if existing_relation is not none %}
            {% set existing_relation = load_cached_relation(existing_relation) %}
            {% if existing_relation is not none %}
                {{ adapter.rename_relation(existing_relation, backup_relation) }}
            {% endif %}
        {% endif %}
        {{ adapter.rename_relation(intermediate_relation, target_relation) }}
    {% endif %}

    {% set should_revoke = should_revoke(existing_relation, full_refresh_mode=True) %}
    {% do apply_grants(target_relation, grant_config, should_revoke=should_revoke) %}

    {% do persist_docs(target_relation, model) %}

    {{ run_hooks(post_hooks, inside_transaction=True) }}

    {{ adapter.commit() }}

    {% if not in_place %}
        {{ drop_relation_if_exists(backup_relation) }}
    {% endif %}

    {{ run_hooks(post_hooks, inside_transaction=False) }}

    {{ return({'relations': [target_relation]}) }}

{%- endmaterialization -%}
