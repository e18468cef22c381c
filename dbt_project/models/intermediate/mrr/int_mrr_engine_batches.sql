-- The ledger of the MRR engine's builds (METRICS.md "Incremental builds"): per build (batch_at), one
-- header row (settings not null: what the build saw: "today", the settings, how far the loads went) and one row per
-- subscription whose MRR history may have changed since the previous batch, with its customer; plus
-- customers whose attributes changed, or with an invoice or credit note loaded (their revenue).
-- A subscription may change because (a contract of the contracts file: always listed, as they are few)
--   one of its invoices was loaded again or for the first time (new, paid, voided, edited), or one of its
--   proration invoice items (pending, invoiced, deleted);
--   the subscription itself was loaded again (ended, cancelled, paused);
--   "today" moved past one of its instants: a period starting, an unpaid invoice lapsing after
--   past_due_grace_days, a draft going stale after draft_invoice_grace_hours, an end.
-- A full batch (the first build, changed settings, "today" moved backward) rebuilds every history.
-- The last 30 batches are kept: an engine model that missed more than that rebuilds everything.
-- Always analyzed after a build: every engine model plans its joins on how many rows this batch lists.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    indexes=[{'columns': ['batch_at']}],
    post_hook='analyze {{ this }}',
    pre_hook="{% if is_incremental() %}delete from {{ this }} where batch_at < (select min(batch_at) from (select distinct batch_at from {{ this }} order by batch_at desc limit 29) as kept){% endif %}",
) }}

{#- The previous batch's bounds as constants in the SQL below: the planner then sees how few rows
    are past them (the synced_at and period_start_at indexes) instead of guessing a third of each table. -#}
{%- set previous = {'as_of_at': none} -%}
{%- if execute and is_incremental() -%}
    {%- set sql -%}
        select as_of_at::text, invoices_synced_through::text, subscriptions_synced_through::text,
               customers_synced_through::text, credit_notes_synced_through::text, settings
        from {{ this }} where settings is not null order by batch_at desc limit 1
    {%- endset -%}
    {%- set rows = run_query(sql).rows -%}
    {%- if rows | length > 0 -%}
        {%- set names = ['as_of_at', 'invoices', 'subscriptions', 'customers', 'credit_notes', 'settings'] -%}
        {%- for i in range(6) -%}
            {%- do previous.update({names[i]: rows[0][i]}) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endif -%}
{%- set synced_after = {} -%}
{%- for name in ['invoices', 'subscriptions', 'customers', 'credit_notes'] -%}
{%- do synced_after.update({name: "'" ~ (previous.get(name) or '-infinity') ~ "'::timestamp"}) -%}
{%- endfor -%}
{%- set previous_as_of = "'" ~ (previous.as_of_at or 'infinity') ~ "'::timestamptz" %}

with

now as (
    select
        current_timestamp as batch_at,
        {{ as_of_timestamp() }} as as_of_at,
        {{ mrr_engine_settings() }} as settings,
        (select max(synced_at) from {{ ref('stg_stripe__invoices') }}) as invoices_synced_through,
        (select max(synced_at) from {{ ref('stg_stripe__subscriptions') }}) as subscriptions_synced_through,
        (select max(synced_at) from {{ ref('stg_stripe__customers') }}) as customers_synced_through,
        (select max(synced_at) from {{ ref('stg_stripe__credit_notes') }}) as credit_notes_synced_through
),

-- a full batch: the first build, changed settings, or "today" before the previous batch's
header as (
    select
        now.*,
        {% if previous.as_of_at is none -%}
        true as is_full_batch
        {%- else -%}
        now.settings is distinct from '{{ previous.settings | replace("'", "''") }}'
            or now.as_of_at < {{ previous_as_of }} as is_full_batch
        {%- endif %}
    from now
),

refetched_invoices as (
    select
        invoices.invoice_id,
        invoices.subscription_id,
        invoices.customer_id
    from {{ ref('stg_stripe__invoices') }} as invoices
    cross join header
    where not header.is_full_batch
        and invoices.synced_at > {{ synced_after.invoices }}
),

-- the instants that "today" moving forward can reach: a line's period starting (a cycle or a proration),
-- and within the grace windows after a period start, an unpaid invoice lapsing or a draft going stale
recent_lines as (
    select lines.subscription_id
    from {{ ref('int_invoice_lines_classified') }} as lines
    cross join header
    where not header.is_full_batch
        and lines.period_start_at > {{ previous_as_of }} - greatest(
            interval '{{ var("past_due_grace_days") }} days', interval '{{ var("draft_invoice_grace_hours") }} hours'
        )
        and lines.line_kind in ('recurring', 'proration')
        and lines.period_start_at <= header.as_of_at
        and (
            lines.period_start_at > {{ previous_as_of }}
            or lines.invoice_status in ('open', 'uncollectible', 'draft')
        )
),

changed_subscriptions as (
    select subscription_id from refetched_invoices
    where subscription_id is not null
    union
    select lines.subscription_id
    from {{ ref('int_invoice_lines_classified') }} as lines
    inner join refetched_invoices on lines.invoice_id = refetched_invoices.invoice_id
    where lines.subscription_id is not null
    union
    -- invoice items (classified as rows of their own) loaded since: measured against the invoices' mark,
    -- which every load that brings items also advances or leaves behind them (so none is missed)
    select lines.subscription_id
    from {{ ref('int_invoice_lines_classified') }} as lines
    cross join header
    where not header.is_full_batch
        and lines.synced_at > {{ synced_after.invoices }}
        and lines.is_invoice_item
    union
    select subscriptions.subscription_id
    from {{ ref('stg_stripe__subscriptions') }} as subscriptions
    cross join header
    where not header.is_full_batch
        and subscriptions.synced_at > {{ synced_after.subscriptions }}
    union
    select subscriptions.subscription_id
    from {{ ref('stg_stripe__subscriptions') }} as subscriptions
    cross join header
    where not header.is_full_batch
        and (
            (subscriptions.ended_at > {{ previous_as_of }} and subscriptions.ended_at <= header.as_of_at)
            -- the end under mrr_methodology 'stripe'
            or (subscriptions.canceled_at > {{ previous_as_of }} and subscriptions.canceled_at <= header.as_of_at)
            -- a `cancel_at` passed without a load (it ends the subscription), a pause's `resumes_at` (is_paused)
            or (subscriptions.cancel_at > {{ previous_as_of }} and subscriptions.cancel_at <= header.as_of_at)
            or (
                subscriptions.pause_resumes_at > {{ previous_as_of }}
                and subscriptions.pause_resumes_at <= header.as_of_at
            )
        )
    union
    select subscription_id from recent_lines
    where subscription_id is not null
    union
    -- every contract of the contracts file (they are few: billed by hand), whose start or end "today" may
    -- have passed; a changed file makes a full batch (mrr_engine_settings)
    select contracts.subscription_id
    from {{ ref('stg_finance__contracts') }} as contracts
    cross join header
    where not header.is_full_batch
),

-- the customer of each: the subscription's, else its invoices' (an emulator may leave one out)
changed_rows as (
    select
        changed_subscriptions.subscription_id,
        coalesce(
            subscriptions.customer_id,
            (
                select min(lines.customer_id) from {{ ref('int_invoice_lines_classified') }} as lines
                where lines.subscription_id = changed_subscriptions.subscription_id
            )
        ) as customer_id
    from changed_subscriptions
    left join {{ ref('billing_subscriptions') }} as subscriptions
        on changed_subscriptions.subscription_id = subscriptions.subscription_id
    union
    -- attributes (country, channel) changed
    select
        null as subscription_id,
        customers.customer_id
    from {{ ref('stg_stripe__customers') }} as customers
    cross join header
    where not header.is_full_batch
        and customers.synced_at > {{ synced_after.customers }}
    union
    -- revenue (int_customer_revenue): any invoice or credit note loaded
    select
        null as subscription_id,
        customer_id
    from refetched_invoices
    where customer_id is not null
    union
    select
        null as subscription_id,
        credit_notes.customer_id
    from {{ ref('stg_stripe__credit_notes') }} as credit_notes
    cross join header
    where not header.is_full_batch
        and credit_notes.synced_at > {{ synced_after.credit_notes }}
),

final as (
    select
        header.batch_at,
        header.is_full_batch,
        header.as_of_at,
        header.settings,
        header.invoices_synced_through,
        header.subscriptions_synced_through,
        header.customers_synced_through,
        header.credit_notes_synced_through,
        null::text as subscription_id,
        null::text as customer_id
    from header
    union all
    select
        header.batch_at,
        header.is_full_batch,
        header.as_of_at,
        null as settings,
        null as invoices_synced_through,
        null as subscriptions_synced_through,
        null as customers_synced_through,
        null as credit_notes_synced_through,
        changed_rows.subscription_id,
        -- a customer the mapping file merges is known by its key (METRICS.md "One customer across sources")
        coalesce(mapping.customer_key, changed_rows.customer_id) as customer_id
    from changed_rows
    cross join header
    left join {{ ref('stg_finance__customer_mapping') }} as mapping
        on changed_rows.customer_id = mapping.customer_id
)

select * from final
