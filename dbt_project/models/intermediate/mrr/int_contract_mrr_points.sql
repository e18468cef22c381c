-- The contracts adapter's points (METRICS.md "Contracts outside Stripe"), in the shape of
-- int_subscription_mrr_points' points, which takes them in beside Stripe's: a version of a contract sets
-- its MRR at its start (an absolute point, like a cycle invoice's, on the plan as its price), and a version
-- ending before the contract's next one starts sets zero at its end (like a lapse). The last version's end
-- is the subscription's (billing_subscriptions), an end point like any other.
with

versions as (
    select
        *,
        lead(valid_from) over (partition by subscription_id order by valid_from) as next_valid_from
    from {{ ref('stg_finance__contracts') }}
),

version_points as (
    select
        subscription_id,
        valid_from as point_at,
        1 as priority,
        true as is_absolute,
        true as period_counts,
        price_id,
        mrr_local as mrr_value
    from versions
),

gap_points as (
    select
        subscription_id,
        ended_at as point_at,
        3 as priority,
        true as is_absolute,
        false as period_counts,
        null::text as price_id,
        0::numeric as mrr_value
    from versions
    where next_valid_from is not null and ended_at < next_valid_from
),

final as (
    select * from version_points
    union all
    select * from gap_points
)

select * from final
