{#- The MRR engine's incremental builds (METRICS.md "Incremental builds").

    int_mrr_engine_batches records, per build, which subscriptions (and customers) may have a different
    MRR history since the previous build. Each engine model recomputes exactly those, and records in
    its rows (engine_batch_at) the last batch it has taken in, so a model that did not run, or failed,
    catches up with every batch it missed the next time. Anything that changes every history at once
    (the rules' vars, the fx_rates seed, the engine's version, "today" moving backward) makes a full
    batch, and every engine model then rebuilds everything. -#}

{#- Bump when a change to the engine's models changes past results: the next build recomputes everything. -#}
{% macro mrr_engine_version() -%}
    2026-12-07
{%- endmacro %}

{#- What every MRR history depends on besides the data: a change recomputes every history. -#}
{% macro mrr_engine_settings() -%}
    concat_ws('|',
        'engine {{ mrr_engine_version() }}',
        'past_due_grace_days {{ var("past_due_grace_days") }}',
        'draft_invoice_grace_hours {{ var("draft_invoice_grace_hours") }}',
        'reactivation_window_days {{ var("reactivation_window_days") }}',
        'reporting_currency {{ var("reporting_currency") | lower }}',
        'mrr_methodology {{ mrr_methodology() }}',
        'fx_rates ' || (select md5(coalesce(string_agg(rates::text, ',' order by rates::text), ''))
                        from {{ ref('fx_rates') }} as rates),
        -- the contracts file: a change to it (a contract removed, a version edited) rebuilds every history
        'contracts ' || (select md5(coalesce(string_agg(
                            concat_ws(',', subscription_id, customer_id, price_id, currency, mrr_local, valid_from,
                                      valid_to, ended_at),
                            ';' order by subscription_id, valid_from), ''))
                         from {{ ref('stg_finance__contracts') }}),
        -- the customer mapping: a change to it merges or parts customers' whole histories
        'customer_mapping ' || (select md5(coalesce(string_agg(customer_id || '=' || customer_key, ','
                                    order by customer_id), ''))
                                from {{ ref('stg_finance__customer_mapping') }})
    )
{%- endmacro %}

{#- What an engine model takes in this build: the batches after its own newest engine_batch_at, up to
    the newest one its upstream model has taken in (`upstream`; the ledger itself for the first model).
    Returns full=true when it must rebuild everything: first build, --full-refresh, a full batch among
    them, or batches it missed that the ledger no longer keeps. -#}
{% macro mrr_engine_scope(upstream) -%}
    {%- set batches = ref('int_mrr_engine_batches') -%}
    {%- if not execute or not is_incremental() -%}
        {{ return({'full': true}) }}
    {%- endif -%}
    {%- set through_column = 'batch_at' if upstream.identifier == 'int_mrr_engine_batches' else 'engine_batch_at' -%}
    {%- set sql -%}
        with bounds as (
            select
                (select max(engine_batch_at) from {{ this }}) as after_at,
                (select max({{ through_column }}) from {{ upstream }}) as through_at
        )
        select
            to_char(after_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            to_char(through_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            after_at is null
                or through_at is null
                or (select min(batch_at) from {{ batches }}) > after_at
                or exists (
                    select 1 from {{ batches }}
                    where is_full_batch and batch_at > after_at and batch_at <= through_at
                ) as full_rebuild,
            (select to_char(as_of_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
             from {{ batches }} where batch_at = after_at and settings is not null
            ) as after_as_of
        from bounds
    {%- endset -%}
    {%- set row = run_query(sql).rows[0] -%}
    {%- if row[2] or row[3] is none -%}
        {{ return({'full': true, 'through': row[1]}) }}
    {%- endif -%}
    {{ return({'full': false, 'after': row[0], 'through': row[1], 'after_as_of': row[3]}) }}
{%- endmacro %}

{#- The engine_batch_at an engine model stamps on the rows it writes in this build: the newest batch
    its upstream model has taken in. -#}
{% macro mrr_engine_stamp(scope, upstream) -%}
    {%- if scope.through -%}
        '{{ scope.through }}'::timestamptz
    {%- elif upstream.identifier == 'int_mrr_engine_batches' -%}
        (select max(batch_at) from {{ upstream }})
    {%- else -%}
        (select max(engine_batch_at) from {{ upstream }})
    {%- endif -%}
{%- endmacro %}

{#- The ids (`key`: subscription_id or customer_id) the ledger lists in the batches of `scope`. -#}
{% macro mrr_engine_changed(scope, key) -%}
    select distinct {{ key }}
    from {{ ref('int_mrr_engine_batches') }}
    where batch_at > '{{ scope.after }}'::timestamptz
        and batch_at <= '{{ scope.through }}'::timestamptz
        and {{ key }} is not null
{%- endmacro %}

{#- Pre-hook of every engine model: drop the rows it is about to recompute, all of them on a full
    rebuild, else those of the ids (`key`) the batches list, and with `also`:
      'repriced'  the rows of customers billed in a currency whose rate changed (int_customer_mrr_current);
      'months'    the months monthly models recompute for everyone (see mrr_engine_first_month). -#}
{% macro mrr_engine_delete(upstream, key, also=none) -%}
    {%- if is_incremental() -%}
        {%- set scope = mrr_engine_scope(upstream) -%}
        {%- if scope.full -%}
            delete from {{ this }}
        {%- else -%}
            delete from {{ this }}
            where {{ key }} in ({{ mrr_engine_changed(scope, key) }})
            {%- if also == 'repriced' %}
                or currency in ({{ mrr_engine_repriced_currencies(scope) }})
            {%- elif also == 'months' %}
                or month >= {{ mrr_engine_everyone_from(scope) }}
                or (
                    currency in ({{ mrr_engine_repriced_currencies(scope) }})
                    and month >= {{ mrr_engine_repriced_from() }}
                )
            {%- endif %}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- Monthly engine models (int_customer_mrr_monthly, int_customer_price_mrr_monthly) keep a row per customer
    (and price) and month end, the current month's as of today. Besides every month of the customers listed,
    they recompute: when a month has ended since the last build's "today", every customer's months from that
    month on (its row becomes the month end's, and paying customers get a row for the new month); and the
    current month of customers billed in a currency whose rate changed since. Nothing else changes from one
    day to the next (customer_mrr_monthly adds the snapshot day itself). -#}
{% macro mrr_engine_everyone_from(scope) -%}
    (case
        when date_trunc('month', {{ as_of_timestamp() }} at time zone 'UTC')
            > date_trunc('month', '{{ scope.after_as_of }}'::timestamptz at time zone 'UTC')
            then date_trunc('month', '{{ scope.after_as_of }}'::timestamptz at time zone 'UTC')
        else 'infinity'::timestamp
    end)
{%- endmacro %}

{% macro mrr_engine_repriced_from() -%}
    date_trunc('month', {{ as_of_timestamp() }} at time zone 'UTC')
{%- endmacro %}

{#- The first month a monthly engine model recomputes for a span starting in `first_month`. -#}
{% macro mrr_engine_first_month(scope, first_month, is_changed, currency) -%}
    {%- if scope.full -%}
        {{ first_month }}
    {%- else -%}
        (case
            when {{ is_changed }} then {{ first_month }}
            when {{ currency }} in ({{ mrr_engine_repriced_currencies(scope) }})
                then greatest({{ first_month }}, least({{ mrr_engine_everyone_from(scope) }}, {{ mrr_engine_repriced_from() }}))
            else greatest({{ first_month }}, {{ mrr_engine_everyone_from(scope) }})
        end)
    {%- endif -%}
{%- endmacro %}

{#- Today's MRR is valued at today's rate: the currencies whose rate differs from the one on the last
    build's "today" (their customers' current values are recomputed). -#}
{% macro mrr_engine_repriced_currencies(scope) -%}
    select today.currency
    from {{ ref('int_fx_rates_daily') }} as today
    inner join {{ ref('int_fx_rates_daily') }} as before
        on today.currency = before.currency
        and before.rate_date = ('{{ scope.after_as_of }}'::timestamptz at time zone 'UTC')::date
    where today.rate_date = ({{ as_of_timestamp() }} at time zone 'UTC')::date
        and today.rate <> before.rate
{%- endmacro %}

{#- The start of a billing period that ends at `end_at`, by the price's interval in UTC calendar terms
    (a monthly period ending Mar 1 started Feb 1: 28 days, not an average month). -#}
{% macro interval_before(end_at, interval, interval_count) -%}
    (({{ end_at }} at time zone 'UTC' - case {{ interval }}
        when 'month' then make_interval(months => {{ interval_count }})
        when 'year' then make_interval(years => {{ interval_count }})
        when 'week' then make_interval(weeks => {{ interval_count }})
        when 'day' then make_interval(days => {{ interval_count }})
    end) at time zone 'UTC')
{%- endmacro %}

{#- The var mrr_methodology (METRICS.md "Methodology"): 'chartmogul' (the default, METRICS.md's rules) or
    'stripe' (Stripe Billing analytics); anything else stops the build with one line naming it. -#}
{% macro mrr_methodology() -%}
    {%- set value = (var('mrr_methodology', 'chartmogul') or 'chartmogul') | string | lower | trim -%}
    {%- if value not in ['chartmogul', 'stripe'] -%}
        {{ exceptions.raise_compiler_error("var mrr_methodology must be 'chartmogul' or 'stripe', not '" ~ value ~ "'") }}
    {%- endif -%}
    {{ return(value) }}
{%- endmacro %}

{#- Whether int_invoice_lines_classified must value every line again: the methodology differs from the one
    the MRR engine's last batch was built with (its values depend on it). -#}
{% macro mrr_methodology_changed() -%}
    {%- if not execute -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set ledger = adapter.get_relation(this.database, this.schema, 'int_mrr_engine_batches') -%}
    {%- if ledger is none -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set rows = run_query("select settings from " ~ ledger ~ " where settings is not null order by batch_at desc limit 1").rows -%}
    {%- if rows | length == 0 -%}
        {{ return(false) }}
    {%- endif -%}
    {{ return(('mrr_methodology ' ~ mrr_methodology()) not in (rows[0][0] or '')) }}
{%- endmacro %}

{#- The cycle lines of prices billed for more than one month at a time (renewals' terms), as a condition on
    int_invoice_lines_classified; that model keeps a partial index on exactly this condition. -#}
{% macro multi_month_cycle_lines() -%}
    line_kind = 'recurring' and (recurring_interval = 'year' or (recurring_interval = 'month' and recurring_interval_count > 1))
{%- endmacro %}
