-- Every figure of a closed month that differs from what was reported (METRICS.md "Month close: as reported and as
-- restated"): the month's as-reported version (history.month_close_metrics, kept by the first publish after the
-- month ended) against today's mrr_monthly and saas_kpis_monthly, one row per metric that moved.
with

closed as (
    select * from {{ source('history', 'month_close') }}
),

reported as (
    select * from {{ source('history', 'month_close_metrics') }}
),

waterfall as (
    select * from {{ ref('mrr_monthly') }}
),

kpis as (
    select * from {{ ref('saas_kpis_monthly') }}
),

current_figures as (
    select
        waterfall.month,
        'mrr_monthly.' || figures.key as metric,
        figures.value::numeric as value
    from waterfall
    cross join lateral jsonb_each_text(to_jsonb(waterfall) - 'month' - 'is_complete_month') as figures
    union all
    select
        kpis.month,
        'saas_kpis_monthly.' || figures.key as metric,
        figures.value::numeric as value
    from kpis
    cross join lateral jsonb_each_text(to_jsonb(kpis) - 'month' - 'is_complete_month') as figures
),

reported_mrr as (
    select
        month,
        value as mrr
    from reported
    where metric = 'mrr_monthly.ending_mrr'
),

compared as (
    select
        reported.month,
        reported.metric,
        reported.value as reported_value,
        current_figures.value as current_value,
        closed.reported_at,
        closed.published_at,
        reported_mrr.mrr as reported_mrr,
        -- amounts of money (the others are counts and rates)
        reported.metric ~ '^mrr_monthly\.(.*_mrr|fx_impact)$'
        or reported.metric in ('saas_kpis_monthly.mrr', 'saas_kpis_monthly.arr') as is_money
    from reported
    inner join closed
        on reported.month = closed.month
    left join current_figures
        on reported.month = current_figures.month
        and reported.metric = current_figures.metric
    left join reported_mrr
        on reported.month = reported_mrr.month
),

final as (
    select
        month,
        metric,
        reported_value,
        current_value,
        current_value - reported_value as difference,
        case when is_money then round((current_value - reported_value) / nullif(reported_mrr, 0), 6) end
            as share_of_reported_mrr,
        case
            when is_money
            then abs(coalesce(current_value, 0) - coalesce(reported_value, 0))
                > {{ var('restatement_threshold_share') }} * abs(reported_mrr)
        end as is_material,
        reported_at,
        published_at
    from compared
    where (reported_value is null) <> (current_value is null) or reported_value <> current_value
)

select * from final
