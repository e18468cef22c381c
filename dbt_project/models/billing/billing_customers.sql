-- The billing contract's customers (METRICS.md "The billing contract"): every billed customer of every
-- source, one row each, with the source that bills it. Stripe's customers as staged; a contract customer
-- per customer of the contracts file (its name and country from the file, its first contract's start as
-- created_at, no email, metadata or card). Customers the mapping file merges (METRICS.md "One customer across
-- sources") are one row under their key.
with

stripe as (
    select
        customer_id,
        billing_account,
        'stripe' as billing_source,
        email,
        customer_name,
        currency,
        country,
        metadata,
        is_deleted,
        is_livemode,
        default_card_expires_on,
        default_payment_method_created_at,
        created_at,
        synced_at
    from {{ ref('stg_stripe__customers') }}
),

contracts as (
    select
        customer_id,
        min(billing_account) as billing_account,
        'contracts' as billing_source,
        null::text as email,
        min(customer_name) as customer_name,
        min(currency) as currency,
        min(country) as country,
        jsonb_build_object('source_customer_id', min(source_customer_id)) as metadata,
        false as is_deleted,
        true as is_livemode,
        null::date as default_card_expires_on,
        null::timestamptz as default_payment_method_created_at,
        min(valid_from) as created_at,
        max(synced_at) as synced_at
    from {{ ref('stg_finance__contracts') }}
    group by customer_id
),

sourced as (
    select * from stripe
    union all
    select * from contracts
),

mapping as (
    select * from {{ ref('stg_finance__customer_mapping') }}
),

-- a customer whose id is a key of the mapping is one of the customers merged under it
keys as (
    select
        customer_id,
        customer_key
    from mapping
    union all
    select
        sourced.customer_id,
        sourced.customer_id as customer_key
    from sourced
    where sourced.customer_id in (select mapping.customer_key from mapping)
        and sourced.customer_id not in (select mapping.customer_id from mapping)
),

unmapped as (
    select sourced.*
    from sourced
    where sourced.customer_id not in (select keys.customer_id from keys)
),

-- one row per key: the attributes of its most recently created customer, created when the first was
merged as (
    select distinct on (keys.customer_key)
        keys.customer_key as customer_id,
        sourced.billing_account,
        sourced.billing_source,
        sourced.email,
        sourced.customer_name,
        sourced.currency,
        sourced.country,
        sourced.metadata,
        bool_and(sourced.is_deleted) over (partition by keys.customer_key) as is_deleted,
        sourced.is_livemode,
        sourced.default_card_expires_on,
        sourced.default_payment_method_created_at,
        min(sourced.created_at) over (partition by keys.customer_key) as created_at,
        max(sourced.synced_at) over (partition by keys.customer_key) as synced_at
    from sourced
    inner join keys on sourced.customer_id = keys.customer_id
    order by keys.customer_key asc, sourced.created_at desc, sourced.customer_id asc
),

final as (
    select * from unmapped
    union all
    select * from merged
)

select * from final
