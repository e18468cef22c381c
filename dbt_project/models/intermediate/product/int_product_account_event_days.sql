-- One row per account, UTC day and event name: how often, by how many users. Incremental like
-- int_product_user_days (the days touched by new loads are recomputed and replaced).
{{ config(
    unique_key='activity_date',
    partition_by=['activity_date'],
    indexes=[{'columns': ['activity_date']}, {'columns': ['account_id', 'activity_date']}],
) }}

with

{{ product_events_of_touched_days() }},

final as (
    select
        account_id,
        activity_date,
        event_name,
        bool_or(is_feature) as is_feature,
        bool_or(is_key_action) as is_key_action,
        count(*) as events,
        count(distinct user_id) as users,
        max(load_id) as max_load_id
    from events
    group by account_id, activity_date, event_name
)

select * from final
