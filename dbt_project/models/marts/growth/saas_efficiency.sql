-- Growth efficiency per month and quarter (METRICS.md "Efficiency"): net new ARR, rule of 40, burn
-- multiple, magic number. Profit and burn come from the optional P&L file: without it those columns
-- are null.
with

waterfall as (
    select * from {{ ref('mrr_monthly') }}
),

spend as (
    select * from {{ ref('stg_finance__marketing_spend') }}
),

pnl as (
    select * from {{ ref('stg_finance__pnl') }}
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

as_of as (
    select date_trunc('month', {{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_month
),

spend_by_month as (
    select
        spend.month,
        sum(spend.amount * {{ fx_rate('spend.currency', 'fx.rate') }}) as sales_marketing_spend
    from spend
    left join fx
        on spend.month = fx.rate_date
        and spend.currency = fx.currency
    group by spend.month
),

pnl_by_month as (
    select
        pnl.month,
        pnl.revenue * {{ fx_rate('pnl.currency', 'fx.rate') }} as revenue,
        pnl.operating_expenses * {{ fx_rate('pnl.currency', 'fx.rate') }} as operating_expenses,
        pnl.net_burn * {{ fx_rate('pnl.currency', 'fx.rate') }} as net_burn
    from pnl
    left join fx
        on pnl.month = fx.rate_date
        and pnl.currency = fx.currency
),

months as (
    select
        waterfall.month,
        waterfall.starting_mrr * 12 as starting_arr,
        waterfall.ending_mrr * 12 as ending_arr,
        lag(waterfall.ending_mrr * 12, 12) over (order by waterfall.month) as ending_arr_year_before,
        (
            waterfall.new_mrr + waterfall.expansion_mrr + waterfall.reactivation_mrr
            - waterfall.contraction_mrr - waterfall.churned_mrr
        ) * 12 as net_new_arr,
        spend_by_month.sales_marketing_spend,
        pnl_by_month.revenue,
        pnl_by_month.operating_expenses,
        pnl_by_month.net_burn,
        pnl_by_month.month is not null as has_pnl
    from waterfall
    left join spend_by_month
        on waterfall.month = spend_by_month.month
    left join pnl_by_month
        on waterfall.month = pnl_by_month.month
),

periods as (
    select
        grains.period_type,
        date_trunc(grains.period_type, months.month)::date as period_start,
        months.*
    from months
    cross join (values ('month'), ('quarter')) as grains (period_type)
),

-- a quarter's P&L figures need all three months in the file
aggregated as (
    select
        period_type,
        period_start,
        (array_agg(starting_arr order by month))[1] as starting_arr,
        (array_agg(ending_arr order by month desc))[1] as ending_arr,
        (array_agg(ending_arr_year_before order by month desc))[1] as ending_arr_year_before,
        sum(net_new_arr) as net_new_arr,
        sum(sales_marketing_spend) as sales_marketing_spend,
        case when bool_and(has_pnl) and count(*) = case period_type when 'month' then 1 else 3 end
            then sum(revenue)
        end as revenue,
        case when bool_and(has_pnl) and count(*) = case period_type when 'month' then 1 else 3 end
            then sum(operating_expenses)
        end as operating_expenses,
        case when bool_and(has_pnl) and count(*) = case period_type when 'month' then 1 else 3 end
            then sum(net_burn)
        end as net_burn
    from periods
    group by period_type, period_start
),

measured as (
    select
        *,
        ending_arr / nullif(ending_arr_year_before, 0) - 1 as arr_growth_rate,
        (revenue - operating_expenses) / nullif(revenue, 0) as profit_margin,
        case when period_type = 'quarter' then
                lag(sales_marketing_spend) over (partition by period_type order by period_start)
        end as previous_quarter_sales_marketing_spend
    from aggregated
),

final as (
    select
        measured.period_type,
        measured.period_start,
        (measured.period_start + case measured.period_type when 'month' then interval '1 month'
            else interval '3 months'
        end)::date <= as_of.as_of_month as is_complete_period,
        round(measured.starting_arr, 4) as starting_arr,
        round(measured.ending_arr, 4) as ending_arr,
        round(measured.net_new_arr, 4) as net_new_arr,
        round(measured.arr_growth_rate, 6) as arr_growth_rate,
        round(measured.revenue, 4) as revenue,
        round(measured.operating_expenses, 4) as operating_expenses,
        round(measured.net_burn, 4) as net_burn,
        round(measured.profit_margin, 6) as profit_margin,
        round(measured.arr_growth_rate + measured.profit_margin, 6) as rule_of_40,
        round(measured.net_burn / nullif(greatest(measured.net_new_arr, 0), 0), 4) as burn_multiple,
        round(measured.sales_marketing_spend, 4) as sales_marketing_spend,
        round(measured.previous_quarter_sales_marketing_spend, 4) as previous_quarter_sales_marketing_spend,
        round(measured.net_new_arr / nullif(measured.previous_quarter_sales_marketing_spend, 0), 4) as magic_number
    from measured
    cross join as_of
)

select * from final
