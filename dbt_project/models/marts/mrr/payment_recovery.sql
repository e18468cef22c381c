-- Failed payments and what became of them, by the month of the failure (METRICS.md "Failed payments and
-- recovery"). Amounts in the reporting currency at the rate of the failure's day; the MRR still in dunning at
-- today's rate. Every failed invoice has one outcome: failed = recovered + churned + in_dunning + lost.
with

failed as (
    select * from {{ ref('int_failed_invoices') }}
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

as_of as (
    select
        ({{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_date,
        date_trunc('month', {{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_month
),

valued as (
    select
        date_trunc('month', failed.failed_at at time zone 'UTC')::date as month,
        failed.outcome,
        failed.recovery_method,
        failed.days_to_recover,
        failed.amount_due_local * {{ fx_rate('failed.currency', 'failed_day.rate') }} as amount_due,
        failed.mrr_local * {{ fx_rate('failed.currency', 'failed_day.rate') }} as mrr,
        failed.mrr_in_dunning_local * {{ fx_rate('failed.currency', 'today.rate') }} as mrr_in_dunning
    from failed
    cross join as_of
    left join fx as failed_day
        on failed.currency = failed_day.currency
        and (failed.failed_at at time zone 'UTC')::date = failed_day.rate_date
    left join fx as today
        on failed.currency = today.currency
        and as_of.as_of_date = today.rate_date
),

final as (
    select
        valued.month,
        count(*) as failed_invoices,
        round(sum(valued.amount_due), 4) as failed_amount,
        round(sum(valued.mrr), 4) as failed_mrr,
        count(*) filter (where valued.outcome = 'recovered') as recovered_invoices,
        count(*) filter (where valued.recovery_method = 'retry') as recovered_by_retry,
        count(*) filter (where valued.recovery_method = 'card_update') as recovered_by_card_update,
        round(coalesce(sum(valued.amount_due) filter (where valued.outcome = 'recovered'), 0), 4) as recovered_amount,
        round(coalesce(sum(valued.mrr) filter (where valued.outcome = 'recovered'), 0), 4) as recovered_mrr,
        count(*) filter (where valued.outcome = 'churned') as churned_invoices,
        round(coalesce(sum(valued.mrr) filter (where valued.outcome = 'churned'), 0), 4) as churned_mrr,
        count(*) filter (where valued.outcome = 'in_dunning') as in_dunning_invoices,
        round(coalesce(sum(valued.mrr_in_dunning), 0), 4) as mrr_in_dunning,
        count(*) filter (where valued.outcome = 'lost') as lost_invoices,
        round(count(*) filter (where valued.outcome = 'recovered')::numeric / count(*), 6) as recovery_rate,
        round(
            (percentile_cont(0.5) within group (order by valued.days_to_recover))::numeric, 2
        ) as median_days_to_recover,
        valued.month < min(as_of.as_of_month) as is_complete_month
    from valued
    cross join as_of
    group by valued.month
)

select * from final
