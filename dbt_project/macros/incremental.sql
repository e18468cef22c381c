{#- Incremental builds of the large invoice tables (stg_stripe__invoices, stg_stripe__invoice_lines,
    int_invoice_lines_classified) and the key sets incremental models work on. -#}

{#- The newest synced_at already in this model (or in `relation`: the model a key set is computed for, as
    its last build left it, previous_build_of): rows loaded after it (a later load stamps a later time) are
    processed; a row processed again replaces itself (delete+insert on the key), never duplicates.
    A subquery, not a constant read at compile time: with a constant the planner knows how few rows a
    night brought and picks nested loops, which made int_invoice_lines_classified take 95 s instead of
    2 s at 100,000 customers (bench/mrr_build.py). -#}
{% macro synced_watermark(relation=none) -%}
    (select coalesce(max(synced_at), '-infinity'::timestamp) from {{ relation if relation is not none else this }})
{%- endmacro %}

{#- Pre-hook of an incremental build that recomputes the keys (`key`) its key set lists: drop its rows of
    them first, so that rows a key no longer has go too, even when it has none left (an invoice whose
    draft lines were all edited away, a customer whose history vanished). -#}
{% macro delete_keys_of(key_set_name, key) -%}
    {%- if is_incremental() -%}
    delete from {{ this }} where {{ key }} in (select {{ key }} from {{ ref(key_set_name) }})
    {%- endif -%}
{%- endmacro %}

{#- Post-hook of the large tables: fresh statistics before the next model plans its joins, when they are
    stale. A table just built has none (until autovacuum gets to it) and is analyzed; an incremental build
    that changed a small share of the rows leaves them good enough, and analyzing a million-row table
    every night costs more than the build itself. Stale: never analyzed, or more than 10% of the rows
    changed since. -#}
{% macro analyze_if_stale() -%}
    {{ return(adapter.dispatch('analyze_if_stale')()) }}
{%- endmacro %}

{% macro default__analyze_if_stale() -%}
do $$
begin
    if coalesce((
        select (last_analyze is null and last_autoanalyze is null)
            or n_mod_since_analyze > 0.1 * greatest(n_live_tup, 1000)
        from pg_stat_user_tables
        where relid = '"{{ this.schema }}"."{{ this.identifier }}"'::regclass
    ), true) then
        analyze {{ this }};
    end if;
end
$$
{%- endmacro %}

{#- Key sets (METRICS.md "Incremental builds"). What an incremental build works on (the invoices loaded
    since its last build, the subscriptions they touch, the customers or months to rebuild) is a model of
    its own, built just before it and ref()'d by it: stg_stripe__invoices_to_restage,
    int_refetched_invoices, int_subscriptions_to_reclassify, int_invoices_to_reclassify,
    int_segment_customers_to_rebuild, int_segment_rows_before_rebuild, int_segment_months_to_rebuild.
    A table, analyzed when built (the planner then knows it holds a few thousand rows, not the third of a
    table it guesses for a subquery against a watermark, and reads the big tables by index instead of
    scanning them), with its own tests, and there to be read after the build (what did the last build
    recompute?).

    The key set refs the parents of the model it is for and the model refs the key set, so dbt builds
    the key set first: it is computed before the model's rows change (the model's pre-hook then deletes
    the rows it recomputes, delete_keys_of). The one thing a key set reads that dbt cannot draw (it would
    be a cycle) is that model's table as its last build left it (its watermark, the rows compared):
    previous_build_of, the key set's counterpart of `this`. -#}

{#- The table of the incremental model `model_name` as its last build left it; none when its next build
    is a full one (no table yet, or --full-refresh), which reads no key set. -#}
{% macro previous_build_of(model_name) -%}
    {%- if not execute or flags.FULL_REFRESH -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set node = graph.nodes['model.' ~ project_name ~ '.' ~ model_name] -%}
    {{ return(adapter.get_relation(database=node.database, schema=node.schema, identifier=node.alias)) }}
{%- endmacro %}

{#- ref() of the key set `model_name`, from the model it is for (`-- depends_on: {{ key_set(...) }}`, so that
    dbt sees the dependency whatever the build). An incremental build stops, before changing a row, when
    this dbt invocation does not build the key set too: one left by an earlier invocation lists what
    that one's build had to recompute, not this one's. Every job and `saas-metrics run` build both; a
    selection does with `+model` (or a --full-refresh, which reads no key set). -#}
{% macro key_set(model_name) -%}
    {%- set unique_id = 'model.' ~ project_name ~ '.' ~ model_name -%}
    {%- if execute and flags.WHICH in ('run', 'build') and is_incremental() and unique_id not in selected_resources -%}
        {{ exceptions.raise_compiler_error(
            model.name ~ " builds incrementally from the key set " ~ model_name ~ ", which this dbt run does not "
            ~ "build: select it too (`+" ~ model.name ~ "`), or rebuild with --full-refresh") }}
    {%- endif -%}
    {{ return(ref(model_name)) }}
{%- endmacro %}

{#- Post-hook: a partial index on a big table for one reader's filter (`predicate`, written exactly as the
    reader's WHERE clause so that the planner can use it), created once per table: its name carries the
    table's oid, as a rebuild (a new table) needs its own. `columns` may include every column the reader
    takes, for index-only scans. -#}
{% macro partial_index(name, columns, predicate) -%}
do $$
begin
    if not exists (
        select from pg_indexes
        where schemaname = '{{ this.schema }}' and tablename = '{{ this.identifier }}'
            and indexname = '{{ name }}_' || '{{ this }}'::regclass::oid
    ) then
        execute format('create index %I on {{ this }} ({{ columns | join(", ") }}) where {{ predicate | replace("'", "''") }}',
                       '{{ name }}_' || '{{ this }}'::regclass::oid);
    end if;
end
$$
{%- endmacro %}
