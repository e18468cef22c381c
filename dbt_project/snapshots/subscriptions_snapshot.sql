{#- Daily history of subscription state (METRICS.md "Snapshots"): Stripe overwrites a
    subscription in place, so what it looked like on the day we reported is kept here. -#}
{% snapshot subscriptions_snapshot %}

{{
    config(
        target_schema='snapshots',
        unique_key='subscription_id',
        strategy='check',
        check_cols=['status', 'is_cancel_at_period_end', 'cancel_at', 'canceled_at', 'ended_at',
                    'is_collection_paused', 'pause_collection_behavior'],
        invalidate_hard_deletes=True,
    )
}}

select
    subscription_id,
    customer_id,
    status,
    is_cancel_at_period_end,
    cancel_at,
    canceled_at,
    ended_at,
    is_collection_paused,
    pause_collection_behavior,
    synced_at
from {{ ref('stg_stripe__subscriptions') }}

{% endsnapshot %}
