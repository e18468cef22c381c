-- One row per product account: its Stripe customer (METRICS.md "Accounts and customers"), when
-- it was first and last seen, and its users' roles. Every account is kept, mapped or not.
{{ config(materialized='table', indexes=[{'columns': ['account_id'], 'unique': true}, {'columns': ['customer_id']}]) }}

with

user_days as (
    select * from {{ ref('int_product_user_days') }}
),

customers as (
    select * from {{ ref('billing_customers') }}
),

mapping as (
    select * from {{ ref('stg_product__account_mapping') }}
),

accounts as (
    select
        account_id,
        min(activity_date) as first_seen_date,
        max(activity_date) as last_seen_date,
        count(distinct user_id) as users_seen
    from user_days
    group by account_id
),

-- two customers naming one account: the most recently created live one wins
by_metadata as (
    select distinct on (metadata ->> '{{ var("account_metadata_key") }}')
        metadata ->> '{{ var("account_metadata_key") }}' as account_id,
        customer_id
    from customers
    where metadata ->> '{{ var("account_metadata_key") }}' is not null
    order by metadata ->> '{{ var("account_metadata_key") }}', is_deleted asc, created_at desc, customer_id asc
),

final as (
    select
        accounts.account_id,
        coalesce(by_metadata.customer_id, mapping.customer_id, direct.customer_id) as customer_id,
        case
            when by_metadata.customer_id is not null then 'metadata'
            when mapping.customer_id is not null then 'mapping_table'
            when direct.customer_id is not null then 'customer_id'
        end as mapped_by,
        accounts.first_seen_date,
        accounts.last_seen_date,
        accounts.users_seen
    from accounts
    left join by_metadata
        on accounts.account_id = by_metadata.account_id
    left join mapping
        on accounts.account_id = mapping.account_id
    left join customers as direct
        on accounts.account_id = direct.customer_id
)

select * from final
