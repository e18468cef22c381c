-- Current state of every subscription. Periods moved to the items in API 2025-03-31;
-- older shapes keep them on the subscription, so both are read.
-- Incremental, not a view: subscriptions are read by several models and tests every build, so their JSON is
-- parsed once, and later builds parse only the subscriptions loaded since the last build (a re-fetched one
-- replaces its row).
{{ config(
    materialized='incremental',
    incremental_strategy='delete+insert',
    unique_key='subscription_id',
    on_schema_change='fail',
    indexes=[{'columns': ['subscription_id'], 'unique': True}, {'columns': ['synced_at']}],
    post_hook='{{ analyze_if_stale() }}',
) }}

with

source as (
    select * from {{ source('stripe', 'subscriptions') }}
    {% if is_incremental() -%}
    where synced_at > {{ synced_watermark() }}
    {%- endif %}
),

final as (
    select
        -- ids
        id as subscription_id,
        account as billing_account,
        coalesce(data -> 'customer' ->> 'id', data ->> 'customer') as customer_id,
        -- state
        data ->> 'status' as status,
        lower(data ->> 'currency') as currency,
        coalesce((data ->> 'cancel_at_period_end')::boolean, false) as is_cancel_at_period_end,
        data -> 'pause_collection' ->> 'behavior' as pause_collection_behavior,
        (data -> 'pause_collection' is not null and jsonb_typeof(data -> 'pause_collection') = 'object')
            as is_collection_paused,
        data ->> 'collection_method' as collection_method,
        -- why it was canceled (cancellation_details.reason): cancellation_requested, payment_failed, payment_disputed
        data -> 'cancellation_details' ->> 'reason' as cancellation_reason,
        data -> 'metadata' as metadata,
        -- timestamps
        created as created_at,
        {{ from_unix("data ->> 'start_date'") }} as started_at,
        {{ from_unix("data ->> 'trial_start'") }} as trial_started_at,
        {{ from_unix("data ->> 'trial_end'") }} as trial_ended_at,
        {{ from_unix("data ->> 'canceled_at'") }} as canceled_at,
        {{ from_unix("data ->> 'cancel_at'") }} as cancel_at,
        {{ from_unix("data ->> 'ended_at'") }} as ended_at,
        {{ from_unix("data -> 'pause_collection' ->> 'resumes_at'") }} as pause_resumes_at,
        {{ from_unix("data ->> 'current_period_start'") }} as legacy_current_period_start_at,
        {{ from_unix("data ->> 'current_period_end'") }} as legacy_current_period_end_at,
        synced_at
    from source
)

select * from final
