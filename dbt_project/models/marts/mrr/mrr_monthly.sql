-- The monthly MRR waterfall (METRICS.md "The waterfall"). For every month:
--   ending_mrr = starting_mrr + new + expansion + reactivation - contraction - churned + fx_impact
-- and ending_mrr equals the next month's starting_mrr. Movements are valued at the rate of their
-- day; fx_impact is what rate changes did to the rest. Customers billed in a currency without a rate
-- (mrr_change and mrr null) are left out, amounts and counts alike (METRICS.md "Currencies").
-- churned_mrr = voluntary_churned_mrr + involuntary_churned_mrr, and so for the customers.
with

customer_months as (
    select * from {{ ref('customer_mrr_monthly') }}
),

churn_causes as (
    select * from {{ ref('int_customer_churn_causes') }}
),

movements as (
    select
        movements.*,
        churn_causes.churn_type
    from {{ ref('int_customer_mrr_movements') }} as movements
    left join churn_causes
        on movements.customer_id = churn_causes.customer_id
        and movements.movement_date = churn_causes.movement_date
),

as_of as (
    select date_trunc('month', {{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_month
),

months as (
    select generate_series(
        (select min(movement_month) from movements),
        (select as_of_month from as_of),
        interval '1 month'
    )::date as month
),

ending as (
    select
        month,
        sum(mrr) as ending_mrr,
        count(*) filter (where mrr > 0) as ending_customers
    from customer_months
    group by month
),

moved as (
    select
        movement_month as month,
        sum(mrr_change) filter (where movement_type = 'new') as new_mrr,
        sum(mrr_change) filter (where movement_type = 'expansion') as expansion_mrr,
        sum(mrr_change) filter (where movement_type = 'reactivation') as reactivation_mrr,
        -sum(mrr_change) filter (where movement_type = 'contraction') as contraction_mrr,
        -sum(mrr_change) filter (where movement_type = 'churn') as churned_mrr,
        count(*) filter (where movement_type = 'new' and mrr_change is not null) as new_customers,
        count(*) filter (where movement_type = 'reactivation' and mrr_change is not null) as reactivated_customers,
        count(*) filter (where movement_type = 'churn' and mrr_change is not null) as churned_customers,
        -sum(mrr_change) filter (where movement_type = 'churn' and churn_type = 'voluntary') as voluntary_churned_mrr,
        -sum(mrr_change) filter (
            where movement_type = 'churn' and churn_type = 'involuntary'
        ) as involuntary_churned_mrr,
        count(*) filter (
            where movement_type = 'churn' and churn_type = 'voluntary' and mrr_change is not null
        ) as voluntary_churned_customers,
        count(*) filter (
            where movement_type = 'churn' and churn_type = 'involuntary' and mrr_change is not null
        ) as involuntary_churned_customers
    from movements
    group by movement_month
),

joined as (
    select
        months.month,
        coalesce(lag(ending.ending_mrr) over (order by months.month), 0) as starting_mrr,
        coalesce(moved.new_mrr, 0) as new_mrr,
        coalesce(moved.expansion_mrr, 0) as expansion_mrr,
        coalesce(moved.reactivation_mrr, 0) as reactivation_mrr,
        coalesce(moved.contraction_mrr, 0) as contraction_mrr,
        coalesce(moved.churned_mrr, 0) as churned_mrr,
        coalesce(ending.ending_mrr, 0) as ending_mrr,
        coalesce(lag(ending.ending_customers) over (order by months.month), 0) as starting_customers,
        coalesce(moved.new_customers, 0) as new_customers,
        coalesce(moved.reactivated_customers, 0) as reactivated_customers,
        coalesce(moved.churned_customers, 0) as churned_customers,
        coalesce(ending.ending_customers, 0) as ending_customers,
        coalesce(moved.voluntary_churned_mrr, 0) as voluntary_churned_mrr,
        coalesce(moved.involuntary_churned_mrr, 0) as involuntary_churned_mrr,
        coalesce(moved.voluntary_churned_customers, 0) as voluntary_churned_customers,
        coalesce(moved.involuntary_churned_customers, 0) as involuntary_churned_customers
    from months
    left join ending
        on months.month = ending.month
    left join moved
        on months.month = moved.month
),

final as (
    select
        month,
        starting_mrr,
        new_mrr,
        expansion_mrr,
        reactivation_mrr,
        contraction_mrr,
        churned_mrr,
        ending_mrr,
        starting_customers,
        new_customers,
        reactivated_customers,
        churned_customers,
        ending_customers,
        ending_mrr - starting_mrr - new_mrr - expansion_mrr - reactivation_mrr + contraction_mrr + churned_mrr
            as fx_impact,
        -- the running month is as of today (METRICS.md "Complete months")
        month < (select as_of.as_of_month from as_of) as is_complete_month,
        -- churned_mrr and churned_customers by cause (METRICS.md "Voluntary and involuntary churn")
        voluntary_churned_mrr,
        involuntary_churned_mrr,
        voluntary_churned_customers,
        involuntary_churned_customers
    from joined
)

select * from final
