-- One row per account, user and UTC day with activity. Incremental: each build recomputes only the
-- days that rows of new loads fall on (late events included, however late), from the raw events
-- of those days, and replaces those days (delete+insert on activity_date).
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
        coalesce(user_id, '') as user_id,
        activity_date,
        count(*) as events,
        count(*) filter (where is_key_action) as key_actions,
        bool_or(is_admin_event) as has_admin_event,
        min(occurred_at) as first_event_at,
        max(load_id) as max_load_id
    from events
    group by account_id, coalesce(user_id, ''), activity_date
)

select * from final
