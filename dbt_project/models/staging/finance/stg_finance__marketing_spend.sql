with

source as (
    select * from {{ source('finance', 'marketing_spend') }}
),

final as (
    select
        month::date as month,
        lower(channel) as channel,
        amount::numeric as amount,
        lower(currency) as currency
    from source
)

select * from final
