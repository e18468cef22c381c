{#- Publishing the marts (README "Operating it in Dagster", METRICS.md "Incremental builds").

    BI tools read the schema `marts`; dbt builds the marts folder into `marts_build` (generate_schema_name).
    When a `dbt build` ends with no error and no failed test (warnings are fine), publish_marts (the
    project's on-run-end hook) puts what it built into `marts` in ONE transaction: a failed build leaves
    `marts` exactly as the last good build left it, and a good one changes every mart at once. A Dagster
    refresh defers that transaction to its last step, to publish the marts Python writes after dbt with
    these (deferring_refresh below; orchestration/defs/publish.py).

    - A mart table is moved into `marts` (ALTER TABLE ... SET SCHEMA: no copy), replacing the old one; it
      keeps the grants the old one had and gets those the schema gives new tables (default privileges, as
      `saas-metrics db bi-role` sets them). `marts_build` keeps a view of it, for a later build that
      selects only some marts.
    - A mart view is created in `marts` from its compiled SQL, reading the published marts instead of
      `marts_build`, and, instead of a table, incremental model or view outside the marts folder (the MRR
      engine's tables, which every build updates in place; a billing view, which a build replaces and, when
      its columns change, drops with CASCADE: replacing_relations.sql), a published copy of it beside it
      (`<table>__published`). The copy is brought up to date in the same transaction, by key
      (`customer_id`): the keys with a row written since the copy was last brought up to date (the rows'
      transaction ids) are copied again; if the row counts then differ (rows deleted without
      replacement), or the table was rebuilt (a new table), or it has no such key, it is copied whole; a
      view's copy is made again.
    Everything is keyed on the marts folder, not on names: a mart added later is published the same way.
    Limits: a mart view over a view outside the marts folder reads it live (only tables are copied);
    the copies assume no other writer touches the engine's tables while a build publishes (one refresh
    at a time); a mart that is itself incremental is rebuilt in full by the next build (its table moved). -#}

{% macro marts_schema() -%}marts{%- endmacro %}

{% macro marts_build_schema() -%}marts_build{%- endmacro %}

{% macro publish_marts(results) -%}
    {%- if not execute or flags.WHICH != 'build' -%}
        {{ return('') }}
    {%- endif -%}
    {%- set build_schema = marts_build_schema() -%}
    {%- set failed = [] -%}
    {%- set tables = [] -%}
    {%- set views = [] -%}
    {%- for result in results -%}
        {%- if result.status in ('error', 'fail', 'runtime error') -%}
            {%- do failed.append(result.node.name) -%}
        {%- elif result.node.resource_type == 'model' and result.node.schema == build_schema
            and result.status == 'success' -%}
            {%- if result.node.config.materialized == 'view' -%}
                {%- do views.append(result.node) -%}
            {%- else -%}
                {%- do tables.append(result.node) -%}
            {%- endif -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if failed -%}
        {{ log("marts not published (" ~ failed | join(', ') ~ " failed): schema " ~ marts_schema()
               ~ " keeps the last good build", info=true) }}
        {{ return(clear_pending_publish() if deferring_refresh() else '') }}
    {%- endif -%}
    {%- if not tables and not views -%}
        {{ return(clear_pending_publish() if deferring_refresh() else '') }}
    {%- endif -%}
    {%- set copies = {} -%}
    {%- set view_sql = {} -%}
    {%- for node in views -%}
        {#- a namespace: a plain `set` inside the loop below would not outlive its iteration -#}
        {%- set view = namespace(sql=node.compiled_code) -%}
        {%- for parent_id in node.depends_on.nodes -%}
            {%- set parent = graph.nodes.get(parent_id) -%}
            {%- if parent and parent.resource_type in ('model', 'seed', 'snapshot') -%}
                {%- set source = api.Relation.create(
                    database=parent.database, schema=parent.schema, identifier=parent.alias) -%}
                {%- if parent.schema == build_schema -%}
                    {%- set view.sql = view.sql.replace(source.render(), source.incorporate(
                        path={'schema': marts_schema()}).render()) -%}
                {%- elif parent.config.materialized in ('table', 'incremental', 'seed', 'snapshot', 'view') -%}
                    {%- set copy = source.incorporate(path={'identifier': parent.alias ~ '__published'}) -%}
                    {%- do copies.update({source.render(): (parent.schema, parent.alias, copy.render())}) -%}
                    {%- set view.sql = view.sql.replace(source.render(), copy.render()) -%}
                {%- endif -%}
            {%- endif -%}
        {%- endfor -%}
        {%- do view_sql.update({node.alias: view.sql}) -%}
    {%- endfor -%}
    {%- set statements = publish_functions() ~ "
do $publish$
begin
    create schema if not exists " ~ adapter.quote(marts_schema()) ~ ";" ~ publish_statements(tables, views, view_sql, copies) ~ "
end
$publish$;
" ~ record_month_close() -%}
    {%- set refresh = deferring_refresh() -%}
    {%- if refresh -%}
        {{ log("built " ~ (tables | length + views | length) ~ " marts: refresh " ~ refresh[:8] ~ " publishes them"
               ~ " with the tables it writes after dbt, in one transaction", info=true) }}
        {{ return(store_pending_publish(refresh, statements)) }}
    {%- endif -%}
    {{ log("publishing " ~ (tables | length + views | length) ~ " marts into schema " ~ marts_schema()
           ~ " (" ~ copies | length ~ " published copies brought up to date)", info=true) }}
    {{ return("begin;
" ~ statements ~ "
commit;") }}
{%- endmacro %}

{#- A refresh that writes marts after dbt (the forecast, the churn predictions: orchestration/defs/publish.py)
    sets SAAS_METRICS_PUBLISH_RUN_ID to its run id for its dbt build: the build then stores its publish
    statements in ops.marts_pending_publish instead of running them, and the refresh runs them with its own
    tables in one transaction. Read only while executing (never at parse time: partial parsing is kept). -#}
{% macro deferring_refresh() -%}
    {%- set refresh = env_var('SAAS_METRICS_PUBLISH_RUN_ID', '') -%}
    {%- if refresh and not modules.re.fullmatch('[A-Za-z0-9-]+', refresh) -%}
        {{ exceptions.raise_compiler_error("SAAS_METRICS_PUBLISH_RUN_ID must be a Dagster run id, not "
                                           ~ refresh | tojson) }}
    {%- endif -%}
    {{ return(refresh) }}
{%- endmacro %}

{% macro store_pending_publish(refresh, statements) -%}
    {{ return("begin;
create schema if not exists ops;
create table if not exists ops.marts_pending_publish (
    run_id text primary key,
    built_at timestamptz not null default now(),
    statements text not null
);
delete from ops.marts_pending_publish;
insert into ops.marts_pending_publish (run_id, statements) values ('" ~ refresh ~ "', $pending_publish$" ~ statements ~ "$pending_publish$);
commit;") }}
{%- endmacro %}

{#- A build that publishes nothing leaves no earlier refresh's statements behind. -#}
{% macro clear_pending_publish() -%}
    {{ return("do $clear$ begin if to_regclass('ops.marts_pending_publish') is not null then
    delete from ops.marts_pending_publish; end if; end $clear$;") }}
{%- endmacro %}

{% macro publish_statements(tables, views, view_sql, copies) -%}
    {%- for schema, identifier, copy in copies.values() %}
    perform pg_temp.marts_sync_copy({{ "'" ~ schema ~ "'" }}, {{ "'" ~ identifier ~ "'" }}, {{ "'" ~ identifier ~ "__published'" }}, 'customer_id');
    {%- endfor %}
    {%- for node in tables %}
    perform pg_temp.marts_publish_table({{ "'" ~ marts_build_schema() ~ "'" }}, {{ "'" ~ marts_schema() ~ "'" }}, {{ "'" ~ node.alias ~ "'" }});
    {%- endfor %}
    {%- for name, sql in view_sql.items() %}
    perform pg_temp.marts_publish_view({{ "'" ~ marts_build_schema() ~ "'" }}, {{ "'" ~ marts_schema() ~ "'" }}, {{ "'" ~ name ~ "'" }}, $publish_view${{ sql }}$publish_view$);
    {%- endfor %}
    {#- the grants above include the schema's defaults (SELECT for BI logins): personal columns are taken
        back out again, as the post-hook restrict_personal_columns did in marts_build (macros/personal_data.sql) #}
    {%- for node in tables + views %}
    {%- set graph_node = graph.nodes.get(node.unique_id) %}
    {%- set personal = personal_columns(graph_node) if graph_node else [] %}
    {%- if personal %}
    {%- set readable = [] %}
    {%- for name in graph_node.columns if name not in personal %}{% do readable.append(adapter.quote(name)) %}{% endfor %}
    if exists (select from pg_roles where rolname = 'saas_metrics_bi') then
        revoke select on {{ adapter.quote(marts_schema()) }}.{{ adapter.quote(node.alias) }} from saas_metrics_bi;
        {%- if readable %}
        grant select ({{ readable | join(', ') }}) on {{ adapter.quote(marts_schema()) }}.{{ adapter.quote(node.alias) }} to saas_metrics_bi;
        {%- endif %}
    end if;
    {%- endif %}
    {%- endfor %}
{%- endmacro %}

{#- Session-local helpers (pg_temp: nothing stays behind in the warehouse). -#}
{% macro publish_functions() -%}
create or replace function pg_temp.marts_drop(target_schema text, name text) returns aclitem[]
language plpgsql as $fn$
declare
    relation regclass := to_regclass(format('%I.%I', target_schema, name));
    kind "char";
    acl aclitem[];
begin
    if relation is null then
        return null;
    end if;
    select relkind, relacl into kind, acl from pg_class where oid = relation;
    if kind in ('v') then
        execute format('drop view %s cascade', relation);
    elsif kind in ('m') then
        execute format('drop materialized view %s cascade', relation);
    else
        execute format('drop table %s cascade', relation);
    end if;
    return acl;
end
$fn$;

create or replace function pg_temp.marts_grant(target_schema text, name text, old_acl aclitem[]) returns void
language plpgsql as $fn$
declare
    grant_row record;
begin
    for grant_row in
        select distinct acl.grantee, acl.privilege_type
        from (
            select old.grantee, old.privilege_type
            from aclexplode(old_acl) as old
            union all
            select defaults.grantee, defaults.privilege_type
            from pg_default_acl
            cross join lateral aclexplode(pg_default_acl.defaclacl) as defaults
            where pg_default_acl.defaclnamespace = to_regnamespace(target_schema)
                and pg_default_acl.defaclobjtype = 'r'
        ) as acl
    loop
        execute format(
            'grant %s on %I.%I to %s', grant_row.privilege_type, target_schema, name,
            case when grant_row.grantee = 0 then 'public' else grant_row.grantee::regrole::text end
        );
    end loop;
end
$fn$;

create or replace function pg_temp.marts_publish_table(build_schema text, target_schema text, name text) returns void
language plpgsql as $fn$
declare
    old_acl aclitem[] := pg_temp.marts_drop(target_schema, name);
begin
    execute format('alter table %I.%I set schema %I', build_schema, name, target_schema);
    perform pg_temp.marts_grant(target_schema, name, old_acl);
    execute format('create view %I.%I as select * from %I.%I', build_schema, name, target_schema, name);
end
$fn$;

create or replace function pg_temp.marts_publish_view(build_schema text, target_schema text, name text, definition text)
returns void
language plpgsql as $fn$
declare
    old_acl aclitem[] := pg_temp.marts_drop(target_schema, name);
    built regclass := to_regclass(format('%I.%I', build_schema, name));
    described record;
begin
    execute format('create view %I.%I as %s', target_schema, name, definition);
    perform pg_temp.marts_grant(target_schema, name, old_acl);
    -- the descriptions dbt persisted on the view it built (persist_docs), for BI tools
    if built is not null then
        execute format('comment on view %I.%I is %L', target_schema, name, obj_description(built, 'pg_class'));
        for described in
            select attname, col_description(built, attnum) as description
            from pg_attribute
            where attrelid = built and attnum > 0 and not attisdropped and col_description(built, attnum) is not null
        loop
            execute format('comment on column %I.%I.%I is %L', target_schema, name, described.attname,
                described.description);
        end loop;
    end if;
end
$fn$;

create or replace function pg_temp.marts_sync_copy(source_schema text, source_name text, copy_name text, key text)
returns text
language plpgsql as $fn$
declare
    source_table regclass := format('%I.%I', source_schema, source_name)::regclass;
    copy_relation text := format('%I.%I', source_schema, copy_name);
    now_xid bigint := pg_current_xact_id()::text::bigint;
    state record;
    has_key boolean;
    same_count boolean;
    index_definition text;
    mode text;
begin
    create table if not exists intermediate.marts_publish_state (
        source text primary key,
        source_oid oid not null,
        synced_xid bigint not null
    );
    select * into state from intermediate.marts_publish_state as s where s.source = source_schema || '.' || source_name;
    select exists (
        select 1 from pg_attribute where attrelid = source_table and attname = key and attnum > 0 and not attisdropped
    ) into has_key;
    if to_regclass(copy_relation) is null or state is null or state.source_oid <> source_table::oid
        or (select relkind from pg_class where oid = source_table) = 'v' then
        -- first publish, or the table was rebuilt (--full-refresh): its columns may differ; a view (replaced in
        -- place by a build, replacing_relations.sql) has no row versions to sync by and may have gained columns
        execute format('drop table if exists %s cascade', copy_relation);
        execute format('create table %s as select * from %s', copy_relation, source_table);
        -- the table's indexes (what BI queries through the published view use), or one on the key
        for index_definition in
            select pg_get_indexdef(indexrelid) from pg_index where indrelid = source_table
        loop
            execute regexp_replace(index_definition, 'INDEX \S+ ON \S+', 'INDEX ON ' || copy_relation);
        end loop;
        if has_key and not found then
            execute format('create index on %s (%I)', copy_relation, key);
        end if;
        mode := 'created';
    elsif not has_key or now_xid - state.synced_xid > 1000000000 then
        mode := 'whole';
    else
        -- the keys with a row written after the last sync: transaction ids newer than it
        drop table if exists pg_temp.marts_changed_keys;
        execute format(
            'create temp table marts_changed_keys as select distinct %I as key from %s where age(xmin) < %s',
            key, source_table, now_xid - state.synced_xid
        );
        execute format('delete from %s where %I in (select key from pg_temp.marts_changed_keys)', copy_relation, key);
        execute format(
            'insert into %s select * from %s where %I in (select key from pg_temp.marts_changed_keys)',
            copy_relation, source_table, key
        );
        drop table pg_temp.marts_changed_keys;
        -- a row deleted without a replacement leaves the copy with more rows than the table
        execute format('select (select count(*) from %s) = (select count(*) from %s)', copy_relation, source_table)
            into same_count;
        mode := case when same_count then 'by key' else 'whole' end;
    end if;
    if mode = 'whole' then
        execute format('truncate %s', copy_relation);
        execute format('insert into %s select * from %s', copy_relation, source_table);
    end if;
    if mode <> 'by key' then
        execute format('analyze %s', copy_relation);
    end if;
    insert into intermediate.marts_publish_state (source, source_oid, synced_xid)
    values (source_schema || '.' || source_name, source_table::oid, now_xid)
    on conflict (source) do update set source_oid = excluded.source_oid, synced_xid = excluded.synced_xid;
    return mode;
end
$fn$;
{%- endmacro %}
