-- One row per product event. A view: the incremental rollups read only the rows of new loads
-- (by load_id) and the days they touch (by occurred_at), both BRIN-indexed on the raw table.
with

source as (
    select * from {{ source('product', 'events') }}
),

final as (
    select
        -- ids
        event_id,
        account_id,
        user_id,
        -- attributes
        event_name,
        event_name not in {{ sql_list(var('product_non_feature_events')) }} as is_feature,
        event_name in {{ sql_list(var('product_key_actions')) }} as is_key_action,
        coalesce(properties ->> '{{ var("admin_property") }}' = '{{ var("admin_value") }}', false) as is_admin_event,
        properties,
        -- timestamps
        occurred_at,
        (occurred_at at time zone 'UTC')::date as activity_date,
        _dlt_load_id as load_id
    from source
)

select * from final
