-- Each customer's MRR at the end of every month in which it paid (and the month it churned,
-- with 0). The current month shows MRR as of today. Values at the month-end rate.
{{ config(indexes=[{'columns': ['customer_id', 'month']}]) }}  -- one customer's history, fast

with

movements as (
    select * from {{ ref('int_customer_mrr_movements') }}
),

customers as (
    select * from {{ ref('stg_stripe__customers') }}
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

as_of as (
    select ({{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_date
),

spans as (
    select
        customer_id,
        currency,
        mrr_after_local,
        movement_date as valid_from,
        lead(movement_date) over (partition by customer_id order by movement_date) as valid_to
    from movements
),

month_ends as (
    select
        spans.customer_id,
        spans.currency,
        spans.mrr_after_local,
        months.month::date as month,
        least((months.month + interval '1 month - 1 day')::date, as_of.as_of_date) as snapshot_date,
        spans.valid_from,
        spans.valid_to
    from spans
    cross join as_of
    cross join lateral generate_series(
        date_trunc('month', spans.valid_from),
        case
            when spans.mrr_after_local <= 0 then date_trunc('month', spans.valid_from)
            else date_trunc('month', coalesce(spans.valid_to - 1, as_of.as_of_date))
        end,
        interval '1 month'
    ) as months (month)
    where months.month <= as_of.as_of_date
),

in_span as (
    select *
    from month_ends
    where snapshot_date >= valid_from
        and (valid_to is null or snapshot_date < valid_to)
),

final as (
    select
        -- ids
        in_span.customer_id,
        -- dates
        in_span.month,
        in_span.snapshot_date,
        -- amounts
        round(in_span.mrr_after_local * {{ fx_rate('in_span.currency', 'fx.rate') }}, 4) as mrr,
        in_span.currency,
        in_span.mrr_after_local as mrr_local,
        -- attributes
        customers.country,
        customers.metadata ->> 'channel' as acquisition_channel,
        case
            when in_span.mrr_after_local <= 0 then 'churned'
            when in_span.mrr_after_local * coalesce(fx.rate, 1) < 100 then 'under 100'
            when in_span.mrr_after_local * coalesce(fx.rate, 1) < 500 then '100-500'
            when in_span.mrr_after_local * coalesce(fx.rate, 1) < 2000 then '500-2000'
            else '2000+'
        end as mrr_band
    from in_span
    left join fx
        on in_span.snapshot_date = fx.rate_date
        and in_span.currency = fx.currency
    left join customers
        on in_span.customer_id = customers.customer_id
)

select * from final
