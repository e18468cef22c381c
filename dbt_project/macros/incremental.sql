{#- Incremental builds of the large invoice tables (stg_stripe__invoices, stg_stripe__invoice_lines,
    int_invoice_lines_classified). -#}

{#- The newest synced_at already in this model: rows loaded after it (a later load stamps a later time)
    are processed; a row processed again replaces itself (delete+insert on the key), never duplicates.
    A subquery, not a constant read at compile time: with a constant the planner knows how few rows a
    night brought and picks nested loops, which made int_invoice_lines_classified take 95 s instead of
    2 s at 100,000 customers (bench/mrr_build.py). -#}
{% macro synced_watermark() -%}
    (select coalesce(max(synced_at), '-infinity'::timestamp) from {{ this }})
{%- endmacro %}

{#- Pre-hook of an incremental build of a model of invoice lines: drop its lines of every invoice loaded
    since the last build (`invoices`, keyed by `id_column`), so lines an invoice no longer has (a draft
    edited) go too, even when it has none left. -#}
{% macro delete_lines_of_refetched_invoices(invoices, id_column) -%}
    {%- if is_incremental() -%}
    delete from {{ this }}
    where invoice_id in (select {{ id_column }} from {{ invoices }} where synced_at > {{ synced_watermark() }})
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

{#- A set of keys an incremental build works on (the invoices loaded since the last build, the
    subscriptions they touch), computed once before the build as a temporary table and analyzed: the
    planner then knows it holds a few thousand rows, not the third of a table it guesses for a subquery
    against a watermark, and reads the big tables by index instead of scanning them (a pre-hook runs on
    the build's own session, so its temporary tables are there for the model's SQL; `pg_temp` names
    them). Only in an incremental build: a full build reads everything. -#}
{% macro temp_key_set(name, sql) -%}
    drop table if exists pg_temp.{{ name }};
    create temporary table {{ name }} as {{ sql }};
    analyze pg_temp.{{ name }}
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
