{#- Month close (METRICS.md "Month close: as reported and as restated").

    The first publish after a month ends keeps that month's figures as published, its "as reported" version:
    every column of mrr_monthly and saas_kpis_monthly (history.month_close_metrics, one row per metric) and
    each customer's MRR of customer_mrr_monthly (history.month_close_customers), with the build's "today"
    (reported_at), the wall-clock time of the publish (published_at) and the MRR engine's settings then.
    A later publish never changes them: metric_restatements and mrr_restatement_customers compare them with
    today's marts. The tables live in schema `history`, which no build and no --full-refresh drops. -#}

{% macro month_close_tables() -%}
create schema if not exists history;
create table if not exists history.month_close (
    month date primary key,
    reported_at timestamptz not null,
    published_at timestamptz not null,
    engine_settings text
);
create table if not exists history.month_close_metrics (
    month date not null references history.month_close (month),
    metric text not null,
    value numeric,
    primary key (month, metric)
);
create table if not exists history.month_close_customers (
    month date not null references history.month_close (month),
    customer_id text not null,
    mrr numeric,
    primary key (month, customer_id)
);
{%- endmacro %}

{#- Statements the publish runs after the marts are in place, in its transaction: the complete months not
    recorded yet, from the marts just published. Nothing when a build publishes without them (a --select). -#}
{% macro record_month_close() -%}
    {%- set marts = marts_schema() -%}
    {%- set batches = namespace(relation=none) -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model' and node.name == 'int_mrr_engine_batches' -%}
            {%- set batches.relation = api.Relation.create(
                database=node.database, schema=node.schema, identifier=node.alias) -%}
        {%- endif -%}
    {%- endfor %}
do $month_close$
begin
    if to_regclass('{{ marts }}.mrr_monthly') is null
        or to_regclass('{{ marts }}.saas_kpis_monthly') is null
        or to_regclass('{{ marts }}.customer_mrr_monthly') is null then
        return;
    end if;
    insert into history.month_close (month, reported_at, published_at, engine_settings)
    select
        waterfall.month,
        {{ as_of_timestamp() }},
        now(),
        {%- if batches.relation is not none %}
        (select settings from {{ batches.relation }} where settings is not null order by batch_at desc limit 1)
        {%- else %}
        null
        {%- endif %}
    from {{ marts }}.mrr_monthly as waterfall
    where waterfall.is_complete_month
        and not exists (select 1 from history.month_close as closed where closed.month = waterfall.month);
    -- the months this publish recorded (now() is the transaction's start: the same in every statement of it)
    insert into history.month_close_metrics (month, metric, value)
    select waterfall.month, 'mrr_monthly.' || figures.key, figures.value::numeric
    from {{ marts }}.mrr_monthly as waterfall
    inner join history.month_close as closed
        on waterfall.month = closed.month and closed.published_at = now()
    cross join lateral jsonb_each_text(to_jsonb(waterfall) - 'month' - 'is_complete_month') as figures;
    insert into history.month_close_metrics (month, metric, value)
    select kpis.month, 'saas_kpis_monthly.' || figures.key, figures.value::numeric
    from {{ marts }}.saas_kpis_monthly as kpis
    inner join history.month_close as closed
        on kpis.month = closed.month and closed.published_at = now()
    cross join lateral jsonb_each_text(to_jsonb(kpis) - 'month' - 'is_complete_month') as figures;
    insert into history.month_close_customers (month, customer_id, mrr)
    select customers.month, customers.customer_id, customers.mrr
    from {{ marts }}.customer_mrr_monthly as customers
    inner join history.month_close as closed
        on customers.month = closed.month and closed.published_at = now()
    where customers.mrr is not null;
end
$month_close$;
{%- endmacro %}
