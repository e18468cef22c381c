with

source as (
    select * from {{ source('finance', 'gross_margin') }}
),

final as (
    select
        month::date as month,
        gross_margin::numeric as gross_margin
    from source
)

select * from final
