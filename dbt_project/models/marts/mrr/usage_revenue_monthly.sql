-- Metered (usage-based) revenue by month of service, kept out of MRR (METRICS.md "Usage revenue").
with

lines as (
    select * from {{ ref('int_invoice_lines_classified') }}
    where line_kind = 'usage' and invoice_status in ('paid', 'open')
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

as_of as (
    select date_trunc('month', {{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_month
),

by_month as (
    select
        date_trunc('month', lines.period_start_at at time zone 'UTC')::date as month,
        round(
            sum({{ cents_to_major('lines.net_cents', 'lines.currency') }} * {{ fx_rate('lines.currency', 'fx.rate') }}),
            4
        ) as usage_revenue,
        count(distinct lines.customer_id) as customers
    from lines
    left join fx
        on (lines.period_start_at at time zone 'UTC')::date = fx.rate_date
        and lines.currency = fx.currency
    group by date_trunc('month', lines.period_start_at at time zone 'UTC')::date
),

final as (
    select
        by_month.month,
        by_month.usage_revenue,
        by_month.customers,
        -- the running month is as of today (METRICS.md "Complete months")
        by_month.month < as_of.as_of_month as is_complete_month
    from by_month
    cross join as_of
)

select * from final
