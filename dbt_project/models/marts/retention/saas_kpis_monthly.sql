-- The board's monthly KPIs, each defined in METRICS.md "SaaS KPIs" with its denominator.
with

waterfall as (
    select * from {{ ref('mrr_monthly') }}
),

-- not materialized: read in several places, each can then use the table's (customer_id, month) index
customer_months as not materialized (
    select * from {{ ref('customer_mrr_monthly') }}
),

movements as (
    select * from {{ ref('mrr_movements') }}
),

spend as (
    select * from {{ ref('stg_finance__marketing_spend') }}
),

margins as (
    select * from {{ ref('stg_finance__gross_margin') }}
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

as_of as (
    select
        ({{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_date,
        date_trunc('month', {{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_month
),

-- customers paying at the start of a month (MRR > 0 at the previous month's end) who churned in it, once
-- each, by the cause of their last churn in it (METRICS.md "Voluntary and involuntary churn")
last_churns_from_start as (
    select distinct on (movements.customer_id, movements.movement_month)
        movements.movement_month as month,
        movements.customer_id,
        movements.churn_type
    from movements
    inner join customer_months as previous
        on movements.customer_id = previous.customer_id
        and previous.month = (movements.movement_month - interval '1 month')::date
        and previous.mrr > 0
    where movements.movement_type = 'churn'
    order by movements.customer_id asc, movements.movement_month asc, movements.movement_date desc
),

churned_from_start as (
    select
        month,
        count(*) as churned_customers,
        count(*) filter (where churn_type = 'voluntary') as voluntary_churned_customers,
        count(*) filter (where churn_type = 'involuntary') as involuntary_churned_customers
    from last_churns_from_start
    group by month
),

-- customers paying 1 and 12 months before: their MRR then and now (0 when no longer paying), one pass
-- over each customer's months
customer_pairs as (
    select
        customer_id,
        currency,
        month,
        mrr_local as then_local,
        case
            when lead(month) over customer_history = (month + interval '1 month')::date
            then lead(mrr_local) over customer_history
            else 0
        end as one_month_later_local,
        coalesce(max(mrr_local) over (
            customer_history range between interval '12 months' following and interval '12 months' following
        ), 0) as twelve_months_later_local
    from customer_months
    window customer_history as (partition by customer_id order by month)
),

-- summed per month and currency (in the customer's currency), both horizons in one pass
pair_sums as (
    select
        month,
        currency,
        sum(then_local) as then_local,
        sum(one_month_later_local) as one_month_later_local,
        sum(least(one_month_later_local, then_local)) as capped_one_month_later_local,
        sum(twelve_months_later_local) as twelve_months_later_local,
        sum(least(twelve_months_later_local, then_local)) as capped_twelve_months_later_local
    from customer_pairs
    where then_local > 0
    group by month, currency
),

-- ...filed under the later month
cohort_sums as (
    select
        (month + interval '1 month')::date as month,
        1 as months_back,
        currency,
        then_local,
        one_month_later_local as now_local,
        capped_one_month_later_local as capped_now_local
    from pair_sums
    union all
    select
        (month + interval '12 months')::date as month,
        12 as months_back,
        currency,
        then_local,
        twelve_months_later_local as now_local,
        capped_twelve_months_later_local as capped_now_local
    from pair_sums
),

-- valued at the later month's rate (its last day, or today for the current month): a constant rate,
-- so currency moves are not retention
cohort_values as (
    select
        cohort_sums.month,
        cohort_sums.months_back,
        cohort_sums.then_local * {{ fx_rate('cohort_sums.currency', 'fx.rate') }} as then_value,
        cohort_sums.now_local * {{ fx_rate('cohort_sums.currency', 'fx.rate') }} as now_value,
        cohort_sums.capped_now_local * {{ fx_rate('cohort_sums.currency', 'fx.rate') }} as capped_now_value
    from cohort_sums
    cross join as_of
    left join fx
        on cohort_sums.currency = fx.currency
        and fx.rate_date = least((cohort_sums.month + interval '1 month - 1 day')::date, as_of.as_of_date)
    where cohort_sums.month <= as_of.as_of_month
),

retention as (
    select
        month,
        sum(now_value) filter (where months_back = 1) / nullif(sum(then_value) filter (where months_back = 1), 0)
            as nrr,
        sum(capped_now_value) filter (where months_back = 1)
        / nullif(sum(then_value) filter (where months_back = 1), 0) as grr,
        sum(now_value) filter (where months_back = 12)
        / nullif(sum(then_value) filter (where months_back = 12), 0) as nrr_trailing_12m,
        sum(capped_now_value) filter (where months_back = 12)
        / nullif(sum(then_value) filter (where months_back = 12), 0) as grr_trailing_12m
    from cohort_values
    group by month
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

monthly as (
    select
        waterfall.month,
        waterfall.month < as_of.as_of_month as is_complete_month,
        waterfall.ending_mrr as mrr,
        waterfall.ending_mrr * 12 as arr,
        waterfall.ending_customers as paying_customers,
        waterfall.ending_mrr / nullif(waterfall.ending_customers, 0) as arpu,
        coalesce(churned_from_start.churned_customers, 0)::numeric
        / nullif(waterfall.starting_customers, 0) as logo_churn_rate,
        (waterfall.churned_mrr + waterfall.contraction_mrr) / nullif(waterfall.starting_mrr, 0)
            as gross_mrr_churn_rate,
        (waterfall.churned_mrr + waterfall.contraction_mrr - waterfall.expansion_mrr - waterfall.reactivation_mrr)
        / nullif(waterfall.starting_mrr, 0) as net_mrr_churn_rate,
        coalesce(churned_from_start.voluntary_churned_customers, 0)::numeric
        / nullif(waterfall.starting_customers, 0) as voluntary_logo_churn_rate,
        coalesce(churned_from_start.involuntary_churned_customers, 0)::numeric
        / nullif(waterfall.starting_customers, 0) as involuntary_logo_churn_rate,
        waterfall.voluntary_churned_mrr / nullif(waterfall.starting_mrr, 0) as voluntary_mrr_churn_rate,
        waterfall.involuntary_churned_mrr / nullif(waterfall.starting_mrr, 0) as involuntary_mrr_churn_rate,
        retention.nrr,
        retention.grr,
        retention.nrr_trailing_12m,
        retention.grr_trailing_12m,
        (waterfall.new_mrr + waterfall.expansion_mrr + waterfall.reactivation_mrr)
        / nullif(waterfall.churned_mrr + waterfall.contraction_mrr, 0) as quick_ratio,
        waterfall.new_customers,
        spend_by_month.sales_marketing_spend,
        margins.gross_margin,
        waterfall.ending_mrr / nullif(lag(waterfall.ending_mrr) over (order by waterfall.month), 0) - 1
            as mrr_growth_rate
    from waterfall
    cross join as_of
    left join churned_from_start
        on waterfall.month = churned_from_start.month
    left join retention
        on waterfall.month = retention.month
    left join spend_by_month
        on waterfall.month = spend_by_month.month
    left join margins
        on waterfall.month = margins.month
),

-- LTV divides by logo churn averaged over the trailing 6 complete months (as ChartMogul does)
with_ltv_churn as (
    select
        *,
        avg(case when is_complete_month then logo_churn_rate end) over (
            order by month rows between 5 preceding and current row
        ) as churn_6m_through_month
    from monthly
),

with_ltv as (
    select
        *,
        case
            when is_complete_month then churn_6m_through_month
            else lag(churn_6m_through_month) over (order by month)
        end as ltv_logo_churn_rate
    from with_ltv_churn
),

final as (
    select
        month,
        round(mrr, 4) as mrr,
        round(arr, 4) as arr,
        paying_customers,
        round(arpu, 4) as arpu,
        round(logo_churn_rate, 6) as logo_churn_rate,
        round(gross_mrr_churn_rate, 6) as gross_mrr_churn_rate,
        round(net_mrr_churn_rate, 6) as net_mrr_churn_rate,
        round(nrr, 6) as nrr,
        round(grr, 6) as grr,
        round(nrr_trailing_12m, 6) as nrr_trailing_12m,
        round(grr_trailing_12m, 6) as grr_trailing_12m,
        round(quick_ratio, 4) as quick_ratio,
        round(ltv_logo_churn_rate, 6) as ltv_logo_churn_rate,
        round(arpu / nullif(ltv_logo_churn_rate, 0), 4) as ltv,
        round(gross_margin, 6) as gross_margin,
        round(arpu / nullif(ltv_logo_churn_rate, 0) * gross_margin, 4) as ltv_gross_margin,
        round(sales_marketing_spend, 4) as sales_marketing_spend,
        new_customers,
        round(sales_marketing_spend / nullif(new_customers, 0), 4) as cac,
        round(
            arpu / nullif(ltv_logo_churn_rate, 0) * gross_margin
            / nullif(sales_marketing_spend / nullif(new_customers, 0), 0), 4
        ) as ltv_to_cac,
        round(sales_marketing_spend / nullif(new_customers, 0) / nullif(arpu * gross_margin, 0), 4)
            as cac_payback_months,
        round(mrr_growth_rate, 6) as mrr_growth_rate,
        is_complete_month,
        -- churn by cause (METRICS.md "Voluntary and involuntary churn")
        round(voluntary_logo_churn_rate, 6) as voluntary_logo_churn_rate,
        round(involuntary_logo_churn_rate, 6) as involuntary_logo_churn_rate,
        round(voluntary_mrr_churn_rate, 6) as voluntary_mrr_churn_rate,
        round(involuntary_mrr_churn_rate, 6) as involuntary_mrr_churn_rate
    from with_ltv
)

select * from final
