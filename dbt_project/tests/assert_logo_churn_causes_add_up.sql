-- Blocking: the logo churn by cause adds up to the logo churn (METRICS.md "Voluntary and involuntary churn").
{{ config(severity='error') }}

with

kpis as (
    select * from {{ ref('saas_kpis_monthly') }}
),

final as (
    select
        month,
        logo_churn_rate,
        voluntary_logo_churn_rate,
        involuntary_logo_churn_rate
    from kpis
    -- each rate is rounded to 6 places: their sum is within one unit of the last place of each
    where abs(logo_churn_rate - voluntary_logo_churn_rate - involuntary_logo_churn_rate) > 0.000002
)

select * from final
