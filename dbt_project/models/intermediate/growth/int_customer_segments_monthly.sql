-- Each customer's month (a row of int_customer_mrr_monthly) with its movements and its segment in
-- every dimension (METRICS.md "Segments"): what mrr_by_segment and cohort_retention_by_segment add up.
-- A segment is the value at the month's end; a customer without MRR then (it churned in the month)
-- keeps the plan, billing interval and MRR band of the previous month's end; a missing value is '(none)'.
-- One pass over the customer months (a window per customer, read in index order), no self-join.
-- Incremental per customer (macros/segments.sql): only the customers whose engine rows were rewritten
-- since the last build (a newer engine_batch_at, or listed by the engine's ledger) or whose Stripe
-- customer was loaded again are recomputed, all their months at once: the key set
-- int_segment_customers_to_rebuild, built just before (with their rows as they were,
-- int_segment_rows_before_rebuild); the months in which a row changed go to the ledger
-- int_customer_segments_monthly__changed_months (growth_record_changed_months). A change of var
-- segment_metadata_keys or of a product's name needs a full refresh (`saas-metrics run --full-refresh`).
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    indexes=[{'columns': ['customer_id', 'month'], 'unique': True}, {'columns': ['month']}],
    pre_hook="{{ growth_segments_prepare() }}",
    post_hook="{{ growth_record_changed_months(['starting_mrr', 'new_mrr', 'expansion_mrr', 'reactivation_mrr', 'contraction_mrr', 'churned_mrr', 'mrr', 'new_customers', 'reactivated_customers', 'churned_customers', 'is_paying_at_start', 'is_paying', 'plan', 'billing_interval', 'country', 'acquisition_channel', 'mrr_band', 'billing_account', 'segment_metadata']) }}",
) }}

-- depends_on: {{ key_set('int_segment_customers_to_rebuild') }}
-- depends_on: {{ key_set('int_segment_rows_before_rebuild') }}

with

{% if is_incremental() -%}
-- the customers to rebuild, whose rows the pre-hook deleted (growth_segments_prepare)
changed_customers as (
    select customer_id from {{ ref('int_segment_customers_to_rebuild') }}
),
{%- endif %}

-- a customer billed in a currency without a rate (mrr null) is left out, as from mrr_monthly (METRICS.md
-- "Currencies"), so the segments still add up to the waterfall
customer_months as (
    select * from {{ ref('int_customer_mrr_monthly') }}
    where mrr is not null
    {% if is_incremental() -%}
        and customer_id in (select customer_id from changed_customers)
    {%- endif %}
),

movements as (
    select * from {{ ref('int_customer_mrr_movements') }}
    {% if is_incremental() -%}
    where customer_id in (select customer_id from changed_customers)
    {%- endif %}
),

customer_prices as (
    select * from {{ ref('int_customer_price_mrr_monthly') }}
    {% if is_incremental() -%}
    where customer_id in (select customer_id from changed_customers)
    {%- endif %}
),

prices as (
    select * from {{ ref('billing_prices') }}
),

products as (
    select * from {{ ref('billing_products') }}
),

customers as (
    select * from {{ ref('billing_customers') }}
),

monthly_movements as (
    select
        customer_id,
        movement_month as month,
        coalesce(sum(mrr_change) filter (where movement_type = 'new'), 0) as new_mrr,
        coalesce(sum(mrr_change) filter (where movement_type = 'expansion'), 0) as expansion_mrr,
        coalesce(sum(mrr_change) filter (where movement_type = 'reactivation'), 0) as reactivation_mrr,
        coalesce(-sum(mrr_change) filter (where movement_type = 'contraction'), 0) as contraction_mrr,
        coalesce(-sum(mrr_change) filter (where movement_type = 'churn'), 0) as churned_mrr,
        count(*) filter (where movement_type = 'new') as new_customers,
        count(*) filter (where movement_type = 'reactivation') as reactivated_customers,
        count(*) filter (where movement_type = 'churn') as churned_customers
    from movements
    group by customer_id, movement_month
),

-- the plan at a month's end: the price with the most MRR (the smallest price id on a tie)
main_prices as (
    select distinct on (customer_id, month)
        customer_id,
        month,
        price_id
    from customer_prices
    where mrr > 0
    order by customer_id asc, month asc, mrr desc, price_id asc
),

joined as (
    select
        customer_months.customer_id,
        customer_months.month,
        customer_months.mrr,
        customer_months.engine_batch_at as source_batch_at,
        customers.synced_at as customer_synced_at,
        coalesce(monthly_movements.new_mrr, 0) as new_mrr,
        coalesce(monthly_movements.expansion_mrr, 0) as expansion_mrr,
        coalesce(monthly_movements.reactivation_mrr, 0) as reactivation_mrr,
        coalesce(monthly_movements.contraction_mrr, 0) as contraction_mrr,
        coalesce(monthly_movements.churned_mrr, 0) as churned_mrr,
        coalesce(monthly_movements.new_customers, 0) as new_customers,
        coalesce(monthly_movements.reactivated_customers, 0) as reactivated_customers,
        coalesce(monthly_movements.churned_customers, 0) as churned_customers,
        case when customer_months.mrr > 0 then coalesce(products.product_name, prices.product_id) end as plan,
        case
            when customer_months.mrr <= 0 then null
            when prices.recurring_interval_count = 1 then prices.recurring_interval
            else prices.recurring_interval_count || ' ' || prices.recurring_interval || 's'
        end as billing_interval,
        case when customer_months.mrr > 0 then customer_months.mrr_band end as mrr_band,
        coalesce(nullif(customers.country, ''), '(none)') as country,
        coalesce(nullif(customers.metadata ->> 'channel', ''), '(none)') as acquisition_channel,
        coalesce(customers.billing_account, '(none)') as billing_account,
        jsonb_build_object(
            {%- for key in var('segment_metadata_keys') %}
            '{{ key }}',
            coalesce(nullif(customers.metadata ->> '{{ key }}', ''), '(none)'){% if not loop.last %},
            {% endif %}
            {%- endfor %}
        ) as segment_metadata
    from customer_months
    left join monthly_movements
        on customer_months.customer_id = monthly_movements.customer_id
        and customer_months.month = monthly_movements.month
    left join main_prices
        on customer_months.customer_id = main_prices.customer_id
        and customer_months.month = main_prices.month
    left join customers
        on customer_months.customer_id = customers.customer_id
    left join prices
        on customers.billing_account = prices.billing_account and main_prices.price_id = prices.price_id
    left join products
        on prices.billing_account = products.billing_account and prices.product_id = products.product_id
),

with_previous as (
    select
        *,
        lag(month) over customer_history as previous_month,
        lag(mrr) over customer_history as previous_mrr,
        lag(plan) over customer_history as previous_plan,
        lag(billing_interval) over customer_history as previous_billing_interval,
        lag(mrr_band) over customer_history as previous_mrr_band
    from joined
    window customer_history as (partition by customer_id order by month)
),

final as (
    select
        -- ids
        customer_id,
        month,
        -- amounts (reporting currency)
        case when previous_month = (month - interval '1 month')::date then previous_mrr else 0 end
            as starting_mrr,
        new_mrr,
        expansion_mrr,
        reactivation_mrr,
        contraction_mrr,
        churned_mrr,
        mrr,
        -- counts (movements, as in mrr_monthly)
        new_customers,
        reactivated_customers,
        churned_customers,
        coalesce(previous_month = (month - interval '1 month')::date and previous_mrr > 0, false)
            as is_paying_at_start,
        mrr > 0 as is_paying,
        -- segments at the month's end
        coalesce(plan, case when previous_mrr > 0 then previous_plan end, '(none)') as plan,
        coalesce(billing_interval, case when previous_mrr > 0 then previous_billing_interval end, '(none)')
            as billing_interval,
        country,
        acquisition_channel,
        coalesce(mrr_band, case when previous_mrr > 0 then previous_mrr_band end, '(none)') as mrr_band,
        billing_account,
        segment_metadata,
        -- what the next incremental build compares
        source_batch_at,
        customer_synced_at
    from with_previous
)

select * from final
