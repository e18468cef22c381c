-- Customers of several sources that are one company (SAAS_METRICS_CUSTOMER_MAPPING_CSV; METRICS.md "One
-- customer across sources"): each source customer by the id the engine knows it by (a contract customer's
-- prefixed `contracts:`), and the key the marts then know the company by.
with

source as (
    select * from {{ source('finance', 'customer_mapping') }}
),

final as (
    select
        case when billing_account = 'contracts' then 'contracts:' || customer_id else customer_id end as customer_id,
        billing_account,
        customer_key,
        file_line
    from source
)

select * from final
