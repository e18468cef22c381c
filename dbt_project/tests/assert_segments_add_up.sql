-- Blocking: in every dimension of mrr_by_segment, a month's segments add up to the month's total in
-- mrr_monthly (MRR, each movement, customers): no customer is dropped or counted twice.
-- A build that does not build mrr_by_segment (the MRR marts alone, an asset subset) has nothing to compare:
-- a segments table left by an earlier build would be compared with this build's waterfall.
{{ config(severity='error') }}
{%- if execute and (load_relation(ref('mrr_by_segment')) is none
    or 'model.saas_metrics.mrr_by_segment' not in selected_resources) %}
select
    null::date as month,
    null::text as dimension
where false
{%- else %}

with

waterfall as (
    select * from {{ ref('mrr_monthly') }}
),

segments as (
    select * from {{ ref('mrr_by_segment') }}
),

dimensions as (
    select distinct dimension from segments
),

totals as (
    select
        month,
        dimension,
        sum(mrr) as mrr,
        sum(new_mrr) as new_mrr,
        sum(expansion_mrr) as expansion_mrr,
        sum(reactivation_mrr) as reactivation_mrr,
        sum(contraction_mrr) as contraction_mrr,
        sum(churned_mrr) as churned_mrr,
        sum(customers) as customers,
        sum(new_customers) as new_customers,
        sum(reactivated_customers) as reactivated_customers,
        sum(churned_customers) as churned_customers
    from segments
    group by month, dimension
),

checked as (
    select
        waterfall.month,
        dimensions.dimension
    from waterfall
    cross join dimensions
    left join totals
        on waterfall.month = totals.month
        and dimensions.dimension = totals.dimension
    where coalesce(totals.mrr, 0) <> waterfall.ending_mrr
        or coalesce(totals.new_mrr, 0) <> waterfall.new_mrr
        or coalesce(totals.expansion_mrr, 0) <> waterfall.expansion_mrr
        or coalesce(totals.reactivation_mrr, 0) <> waterfall.reactivation_mrr
        or coalesce(totals.contraction_mrr, 0) <> waterfall.contraction_mrr
        or coalesce(totals.churned_mrr, 0) <> waterfall.churned_mrr
        or coalesce(totals.customers, 0) <> waterfall.ending_customers
        or coalesce(totals.new_customers, 0) <> waterfall.new_customers
        or coalesce(totals.reactivated_customers, 0) <> waterfall.reactivated_customers
        or coalesce(totals.churned_customers, 0) <> waterfall.churned_customers
    union all
    -- and no segment row falls outside the waterfall's months
    select segments.month, segments.dimension
    from segments
    left join waterfall
        on segments.month = waterfall.month
    where waterfall.month is null
)

select * from checked
{%- endif %}
