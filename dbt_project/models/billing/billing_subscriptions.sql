-- The billing contract's subscriptions (METRICS.md "The billing contract"): every recurring agreement of
-- every source, one row each. Stripe's subscriptions as staged; a contract of the contracts file as one
-- subscription, from its first version's start to its last version's end (open-ended: none), `active`
-- until that end has passed, then `canceled` (ended and canceled at it); collected by invoice.
with

stripe as (
    select
        subscription_id,
        billing_account,
        'stripe' as billing_source,
        customer_id,
        status,
        currency,
        is_cancel_at_period_end,
        pause_collection_behavior,
        is_collection_paused,
        collection_method,
        cancellation_reason,
        metadata,
        created_at,
        started_at,
        trial_started_at,
        trial_ended_at,
        canceled_at,
        cancel_at,
        ended_at,
        pause_resumes_at,
        legacy_current_period_start_at,
        legacy_current_period_end_at,
        synced_at
    from {{ ref('stg_stripe__subscriptions') }}
),

as_of as (
    select {{ as_of_timestamp() }} as as_of_at
),

contract_spans as (
    select
        subscription_id,
        min(billing_account) as billing_account,
        min(customer_id) as customer_id,
        min(contract_id) as contract_id,
        min(currency) as currency,
        min(valid_from) as started_at,
        max(ended_at) filter (where is_last_version) as ends_at,
        max(synced_at) as synced_at
    from {{ ref('stg_finance__contracts') }}
    group by subscription_id
),

contracts as (
    select
        contract_spans.subscription_id,
        contract_spans.billing_account,
        'contracts' as billing_source,
        contract_spans.customer_id,
        case when contract_spans.ends_at <= as_of.as_of_at then 'canceled' else 'active' end as status,
        contract_spans.currency,
        contract_spans.ends_at is not null as is_cancel_at_period_end,
        null::text as pause_collection_behavior,
        false as is_collection_paused,
        'send_invoice' as collection_method,
        null::text as cancellation_reason,
        jsonb_build_object('contract_id', contract_spans.contract_id) as metadata,
        contract_spans.started_at as created_at,
        contract_spans.started_at,
        null::timestamptz as trial_started_at,
        null::timestamptz as trial_ended_at,
        case when contract_spans.ends_at <= as_of.as_of_at then contract_spans.ends_at end as canceled_at,
        contract_spans.ends_at as cancel_at,
        case when contract_spans.ends_at <= as_of.as_of_at then contract_spans.ends_at end as ended_at,
        null::timestamptz as pause_resumes_at,
        null::timestamptz as legacy_current_period_start_at,
        null::timestamptz as legacy_current_period_end_at,
        contract_spans.synced_at
    from contract_spans
    cross join as_of
),

sourced as (
    select * from stripe
    union all
    select * from contracts
),

mapping as (
    select * from {{ ref('stg_finance__customer_mapping') }}
),

-- the customer a mapping merges it into (METRICS.md "One customer across sources")
final as (
    select
        sourced.subscription_id,
        sourced.billing_account,
        sourced.billing_source,
        coalesce(mapping.customer_key, sourced.customer_id) as customer_id,
        sourced.status,
        sourced.currency,
        sourced.is_cancel_at_period_end,
        sourced.pause_collection_behavior,
        sourced.is_collection_paused,
        sourced.collection_method,
        sourced.cancellation_reason,
        sourced.metadata,
        sourced.created_at,
        sourced.started_at,
        sourced.trial_started_at,
        sourced.trial_ended_at,
        sourced.canceled_at,
        sourced.cancel_at,
        sourced.ended_at,
        sourced.pause_resumes_at,
        sourced.legacy_current_period_start_at,
        sourced.legacy_current_period_end_at,
        sourced.synced_at
    from sourced
    left join mapping
        on sourced.customer_id = mapping.customer_id
)

select * from final
