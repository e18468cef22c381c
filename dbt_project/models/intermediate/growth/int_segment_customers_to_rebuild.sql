-- The key set of int_customer_segments_monthly (macros/incremental.sql, "Key sets"), computed just before
-- its incremental build: the customers whose rows (all their months) it rebuilds because they may differ
-- since its last build:
--   rows of int_customer_mrr_monthly rewritten by a newer engine batch (source_batch_at);
--   customers the engine's ledger listed since (also those whose history vanished), and after a full batch
--   (which lists none) the customers no longer in the engine;
--   customers loaded again from Stripe (metadata: customer_synced_at);
--   customers whose MRR differs from the engine's in the latest months (a month ended, a rate changed).
-- Empty when that build is a full one (no table yet, --full-refresh).
{%- set segments = previous_build_of('int_customer_segments_monthly') %}

with

customer_months as (
    select * from {{ ref('int_customer_mrr_monthly') }}
),

batches as (
    select * from {{ ref('int_mrr_engine_batches') }}
),

customers as (
    select * from {{ ref('billing_customers') }}
),

-- int_customer_segments_monthly as its last build left it (on a full build, no rows: see the end)
segments as (
    {%- if segments is not none %}
    select * from {{ segments }}
    {%- else %}
    select
        customer_id,
        month,
        mrr,
        engine_batch_at as source_batch_at,
        engine_batch_at as customer_synced_at
    from customer_months
    where false
    {%- endif %}
),

-- the newest of what the last build took in
previous_build as (
    select
        coalesce(max(source_batch_at), '-infinity') as source_batch_at,
        coalesce(max(customer_synced_at), '-infinity') as customer_synced_at,
        max(month) as latest_month
    from segments
),

-- rows the engine rewrites without listing their customers: when a month has ended, every customer's
-- rows from that month on (the month end's values; a row for the new month), and today's rows of a
-- currency whose rate changed. Both lie in the months from the segments' newest on: compared there.
engine_latest as (
    select
        customer_id,
        month,
        mrr
    from customer_months
    where
        month >= (select previous_build.latest_month from previous_build)
        and mrr is not null
),

segments_latest as (
    select
        customer_id,
        month,
        mrr
    from segments
    where month >= (select previous_build.latest_month from previous_build)
),

listed as (
    -- engine rows written by a newer batch
    select customer_id
    from customer_months
    where engine_batch_at > (select previous_build.source_batch_at from previous_build)
    union
    -- customers the engine's ledger listed since
    select customer_id
    from batches
    where
        batch_at > (select previous_build.source_batch_at from previous_build)
        and customer_id is not null
    union
    -- after a full batch, customers no longer in the engine at all (a contract removed from its file, customers
    -- merged under a key or parted from it): a full batch lists no customer
    select segments.customer_id
    from segments
    where
        exists (
            select 1 from batches
            where
                batches.is_full_batch
                and batches.batch_at > (select previous_build.source_batch_at from previous_build)
        )
        and not exists (
            select 1 from customer_months
            where customer_months.customer_id = segments.customer_id
        )
    union
    -- customers loaded again from Stripe
    select customer_id
    from customers
    where synced_at > (select previous_build.customer_synced_at from previous_build)
    union
    -- an MRR that differs in the latest months
    select coalesce(engine_latest.customer_id, segments_latest.customer_id) as customer_id
    from engine_latest
    full join segments_latest
        on engine_latest.customer_id = segments_latest.customer_id
        and engine_latest.month = segments_latest.month
    where engine_latest.mrr is distinct from segments_latest.mrr
),

-- none when int_customer_segments_monthly builds in full (it rebuilds every customer)
final as (
    select * from listed
    where {{ 'true' if segments is not none else 'false' }}
)

select * from final
