-- MRR, movements and churn per month and segment, built for mrr_by_segment (which publishes it; METRICS.md
-- "Segments"). One scan of the customer months of a month, all dimensions at once (grouping sets).
-- Incremental by month: only the months the ledger of int_customer_segments_monthly lists since this
-- model's last build are recomputed (the key set int_segment_months_to_rebuild, built just before;
-- macros/segments.sql, growth_months_prepare); a full build computes all.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    indexes=[{'columns': ['month']}],
    pre_hook="{{ growth_months_prepare() }}",
) }}
{%- set dimensions = segment_dimensions() %}

-- depends_on: {{ key_set('int_segment_months_to_rebuild') }}

with

customer_months as (
    select * from {{ ref('int_customer_segments_monthly') }}
    {% if is_incremental() -%}
    where month in ({{ growth_months_to_rebuild() }})
    {%- endif %}
),

grouped as (
    select
        month,
        {{ segment_labels(dimensions) }},
        sum(starting_mrr) as starting_mrr,
        sum(new_mrr) as new_mrr,
        sum(expansion_mrr) as expansion_mrr,
        sum(reactivation_mrr) as reactivation_mrr,
        sum(contraction_mrr) as contraction_mrr,
        sum(churned_mrr) as churned_mrr,
        sum(mrr) as mrr,
        count(*) filter (where is_paying_at_start) as starting_customers,
        sum(new_customers) as new_customers,
        sum(reactivated_customers) as reactivated_customers,
        sum(churned_customers) as churned_customers,
        count(*) filter (where is_paying) as customers,
        count(*) filter (where is_paying_at_start and churned_customers > 0) as churned_from_start
    from customer_months
    group by {{ segment_grouping_sets(dimensions, 'month') }}
),

final as (
    select
        month,
        dimension,
        segment,
        starting_mrr,
        new_mrr,
        expansion_mrr,
        reactivation_mrr,
        contraction_mrr,
        churned_mrr,
        mrr,
        starting_customers,
        new_customers::bigint as new_customers,
        reactivated_customers::bigint as reactivated_customers,
        churned_customers::bigint as churned_customers,
        customers,
        round(churned_from_start::numeric / nullif(starting_customers, 0), 6) as logo_churn_rate,
        round((churned_mrr + contraction_mrr) / nullif(starting_mrr, 0), 6) as revenue_churn_rate,
        -- the newest entry of the months ledger this build took in
        {{ growth_ledger_through() }} as ledger_through
    from grouped
)

select * from final
