-- A key set of int_customer_segments_monthly (macros/incremental.sql, "Key sets"), computed just before
-- its incremental build: its rows of the customers it rebuilds (int_segment_customers_to_rebuild) as its
-- last build left them, which its post-hook compares with the rebuilt ones to list the months that
-- changed (macros/segments.sql, growth_record_changed_months). Empty when that build is a full one.
{%- set segments = previous_build_of('int_customer_segments_monthly') %}

with

customers_to_rebuild as (
    select * from {{ ref('int_segment_customers_to_rebuild') }}
),

{% if segments is not none -%}
final as (
    select *
    from {{ segments }}
    where customer_id in (select customers_to_rebuild.customer_id from customers_to_rebuild)
)
{%- else -%}
-- a full build: none
final as (
    select
        customer_id,
        null::date as month
    from customers_to_rebuild
    where false
)
{%- endif %}

select * from final
