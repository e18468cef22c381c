-- Warning: the closed months whose figures moved since they were reported by more than restatement_threshold_share
-- of their reported MRR (METRICS.md "Month close: as reported and as restated"): each row names the month, the
-- figure, and its reported and current values.
{{ config(severity='warn') }}

with

restatements as (
    select * from {{ ref('metric_restatements') }}
),

final as (
    select
        month,
        metric,
        reported_value,
        current_value,
        difference
    from restatements
    where is_material
)

select * from final
