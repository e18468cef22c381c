-- The contracts billed outside Stripe (SAAS_METRICS_CONTRACTS_CSV), one row per version, in the engine's
-- terms (METRICS.md "Contracts outside Stripe"): a version is in force from its start date (00:00 UTC) until
-- its end date or the contract's next version, whichever comes first; its MRR is amount x quantity, less the
-- discount, normalised to a month. Ids are prefixed `contracts:` so that none meets a Stripe id.
with

source as (
    select * from {{ source('finance', 'contracts') }}
),

versions as (
    select
        *,
        lead(start_date) over (partition by contract_id order by start_date) as next_start_date
    from source
),

final as (
    select
        -- ids
        'contracts:' || contract_id as subscription_id,
        'contracts:' || customer_id as customer_id,
        'contracts' as billing_account,  -- the contracts file's account (saas_metrics.config.CONTRACTS_BILLING_ACCOUNT)
        contract_id,
        customer_id as source_customer_id,
        plan as price_id,
        -- attributes
        customer_name,
        country,
        lower(currency) as currency,
        billing_interval,
        interval_count::int as interval_count,
        quantity::int as quantity,
        amount::numeric as amount,
        discount_percent::numeric as discount_percent,
        -- amounts (major units, the contract's currency)
        -- divided, not multiplied by monthly_factor's 1/12 (exact: 162,000 / 12 is 13,500, not 13,499.99...)
        amount * quantity * (1 - discount_percent / 100) * (case billing_interval
            when 'month' then 1 when 'year' then 1 when 'week' then 52 when 'day' then 365
        end) / (case billing_interval when 'month' then 1 else 12 end * interval_count) as mrr_local,
        -- timestamps
        (start_date::timestamp at time zone 'UTC') as valid_from,
        (least(end_date, next_start_date)::timestamp at time zone 'UTC') as valid_to,
        (end_date::timestamp at time zone 'UTC') as ended_at,
        next_start_date is null as is_last_version,
        to_timestamp(_dlt_load_id::double precision) as synced_at,
        file_line
    from versions
)

select * from final
