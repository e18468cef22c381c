-- The largest customers by MRR today and their share of the total (METRICS.md
-- "Revenue concentration"). A customer above `concentration_risk_share` of MRR is flagged.
with

current_mrr as (
    select * from {{ ref('customer_mrr_current') }}
    where mrr > 0
),

ranked as (
    select
        customer_id,
        email,
        mrr,
        row_number() over (order by mrr desc, customer_id asc) as mrr_rank,
        mrr / sum(mrr) over () as share_of_mrr,
        sum(mrr) over (order by mrr desc, customer_id asc rows between unbounded preceding and current row)
        / sum(mrr) over () as cumulative_share_of_mrr
    from current_mrr
),

final as (
    select
        mrr_rank,
        customer_id,
        email,
        mrr,
        round(share_of_mrr, 6) as share_of_mrr,
        round(cumulative_share_of_mrr, 6) as cumulative_share_of_mrr,
        share_of_mrr > {{ var('concentration_risk_share') }} as is_concentration_risk
    from ranked
    where mrr_rank <= {{ var('concentration_top_n') }}
)

select * from final
