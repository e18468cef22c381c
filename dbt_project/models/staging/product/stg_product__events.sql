-- One row per product event. A view: the incremental rollups read only the rows of new loads
-- (by load_id) and the days they touch (by occurred_at), both BRIN-indexed on the raw table.
-- The same body builds on Spark in lake mode (macros/lake.sql: the lake's JSON text, its event_date
-- partitions, each event's latest delivery).
with

source as (
    select * from {{ source('product', 'events') }}
),

deliveries as (
    {{ latest_delivery_of_events('source') }}
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
        coalesce(
            {{ json_text('properties', var('admin_property')) }} = '{{ var("admin_value") }}', false
        ) as is_admin_event,
        properties,
        -- timestamps
        occurred_at,
        {{ event_date_of('occurred_at') }} as activity_date,
        _dlt_load_id as load_id
    from deliveries
)

select * from final
