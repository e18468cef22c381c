-- cohort_retention_by_segment, built month by month (METRICS.md "Segments"; the mart publishes it whole).
-- Incremental: the rows of the months the ledger of int_customer_segments_monthly lists since this
-- model's last build, and every row of a cohort whose own month is listed (its members or their starting
-- MRR may have changed), are recomputed (the key set int_segment_months_to_rebuild, built just before;
-- macros/segments.sql, growth_months_prepare); a full build computes all.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail',
    indexes=[{'columns': ['month']}, {'columns': ['cohort_month']}],
    pre_hook="{{ growth_months_prepare('cohort_month') }}",
) }}
{%- set dimensions = segment_dimensions() %}

-- depends_on: {{ key_set('int_segment_months_to_rebuild') }}

with

customer_months as (
    select * from {{ ref('int_customer_segments_monthly') }}
),

as_of as (
    select date_trunc('month', {{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_month
),

-- the month of each customer's first MRR, its MRR and segments at that month's end
cohort_members as (
    select distinct on (customer_id)
        customer_id,
        month as cohort_month,
        mrr as starting_mrr,
        plan,
        billing_interval,
        country,
        acquisition_channel,
        mrr_band,
        billing_account,
        segment_metadata
    from customer_months
    where new_customers > 0
    order by customer_id, month
),

cohort_sizes as (
    select
        cohort_month,
        {{ segment_labels(dimensions) }},
        count(*) as cohort_customers,
        sum(starting_mrr) as cohort_starting_mrr
    from cohort_members
    group by {{ segment_grouping_sets(dimensions, 'cohort_month') }}
),

{% if is_incremental() -%}
-- the rows to compute: months listed, and every month of a cohort listed
months_to_build as (
    {{ growth_months_to_rebuild() }}
),
{%- endif %}

member_months as (
    select
        cohort_members.cohort_month,
        customer_months.month,
        customer_months.mrr,
        least(customer_months.mrr, cohort_members.starting_mrr) as capped_mrr,
        cohort_members.plan,
        cohort_members.billing_interval,
        cohort_members.country,
        cohort_members.acquisition_channel,
        cohort_members.mrr_band,
        cohort_members.billing_account,
        cohort_members.segment_metadata
    from cohort_members
    inner join customer_months
        on cohort_members.customer_id = customer_months.customer_id
        and cohort_members.cohort_month <= customer_months.month
    {% if is_incremental() -%}
    where customer_months.month in (select month from months_to_build)
        or cohort_members.cohort_month in (select month from months_to_build)
    {%- endif %}
),

activity as (
    select
        cohort_month,
        month,
        {{ segment_labels(dimensions) }},
        count(*) filter (where mrr > 0) as active_customers,
        sum(mrr) as mrr,
        sum(capped_mrr) as capped_mrr
    from member_months
    group by {{ segment_grouping_sets(dimensions, 'cohort_month, month') }}
),

spine as (
    select
        cohort_sizes.*,
        offsets.months_since_start,
        (cohort_sizes.cohort_month + offsets.months_since_start * interval '1 month')::date as month
    from cohort_sizes
    cross join as_of
    cross join lateral generate_series(
        0, {{ months_between('cohort_sizes.cohort_month', 'as_of.as_of_month') }}
    ) as offsets (months_since_start)
),

{% if is_incremental() -%}
spine_to_build as (
    select *
    from spine
    where month in (select month from months_to_build)
        or cohort_month in (select month from months_to_build)
),
{%- else -%}
spine_to_build as (
    select * from spine
),
{%- endif %}

final as (
    select
        spine.cohort_month,
        spine.dimension,
        spine.segment,
        spine.months_since_start,
        spine.month,
        spine.cohort_customers,
        coalesce(activity.active_customers, 0) as active_customers,
        round(coalesce(activity.active_customers, 0)::numeric / spine.cohort_customers, 4) as logo_retention,
        spine.cohort_starting_mrr,
        coalesce(activity.mrr, 0) as mrr,
        round(coalesce(activity.mrr, 0) / nullif(spine.cohort_starting_mrr, 0), 4) as revenue_retention,
        round(coalesce(activity.capped_mrr, 0) / nullif(spine.cohort_starting_mrr, 0), 4) as gross_revenue_retention,
        -- the newest entry of the months ledger this build took in
        {{ growth_ledger_through() }} as ledger_through
    from spine_to_build as spine
    left join activity
        on spine.cohort_month = activity.cohort_month
        and spine.dimension = activity.dimension
        and spine.segment = activity.segment
        and spine.month = activity.month
)

select * from final
