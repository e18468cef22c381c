-- One rate per day and currency into the reporting currency, carrying the last known rate
-- forward (and the first one backward), from the fx_rates seed (METRICS.md "Currencies").
with

rates as (
    select
        rate_date::date as rate_date,
        lower(currency) as currency,
        rate::numeric as rate
    from {{ ref('fx_rates') }}
    where lower(reporting_currency) = lower('{{ var("reporting_currency") }}')
),

bounds as (
    select
        least(min(rate_date), date '2010-01-01') as first_date,
        greatest(max(rate_date), ({{ as_of_timestamp() }} at time zone 'UTC')::date) + 1 as last_date
    from rates
),

days as (
    select generate_series(first_date, last_date, interval '1 day')::date as rate_date
    from bounds
),

spans as (
    select
        currency,
        rate,
        case when rate_date = min(rate_date) over (partition by currency) then date '1900-01-01' else rate_date end
            as valid_from,
        coalesce(lead(rate_date) over (partition by currency order by rate_date), date '9999-12-31') as valid_to
    from rates
),

final as (
    select
        days.rate_date,
        spans.currency,
        spans.rate
    from days
    inner join spans
        on days.rate_date >= spans.valid_from
        and days.rate_date < spans.valid_to
)

select * from final
