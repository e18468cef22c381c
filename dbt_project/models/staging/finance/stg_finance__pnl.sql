with

source as (
    select * from {{ source('finance', 'pnl') }}
),

final as (
    select
        month::date as month,
        revenue::numeric as revenue,
        operating_expenses::numeric as operating_expenses,
        net_burn::numeric as net_burn,
        lower(currency) as currency
    from source
)

select * from final
