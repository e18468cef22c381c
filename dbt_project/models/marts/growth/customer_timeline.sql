-- One customer's life in order, for a customer profile page (METRICS.md "Customer journey"): signup,
-- trial, activation, each MRR movement with the plans it added and removed, health band changes,
-- payment failures, cancellation requests and subscription ends.
-- A view: a profile page reads one customer (`where customer_id = ...`), which reaches every branch
-- through the per-customer indexes of the engine tables; the nightly build pays nothing for it.
-- (customer_id is cast to text in every branch: a branch of another type would keep the filter from
-- being pushed into the union.)
{{ config(materialized='view') }}

with

journeys as not materialized (
    select * from {{ ref('int_customer_journey') }}
),

movements as (
    select * from {{ ref('int_customer_mrr_movements') }}
),

price_changes as (
    select * from {{ ref('int_subscription_prices_mrr_changes') }}
),

prices as (
    select * from {{ ref('billing_prices') }}
),

products as (
    select * from {{ ref('billing_products') }}
),

subscriptions as not materialized (
    select * from {{ ref('billing_subscriptions') }}
),

invoices as (
    select * from {{ ref('stg_stripe__invoices') }}
),

accounts as (
    select * from {{ ref('int_product_accounts') }}
),

weeks as (
    select * from {{ ref('account_engagement_weekly') }}
),

-- per customer and day: the plans (products) that started and stopped being paid for
plan_changes as (
    select
        price_changes.customer_id,
        (price_changes.changed_at at time zone 'UTC')::date as change_date,
        string_agg(distinct coalesce(products.product_name, prices.product_id), ', ')
        filter (where price_changes.mrr_local = price_changes.mrr_change_local) as plans_added,
        string_agg(distinct coalesce(products.product_name, prices.product_id), ', ')
        filter (where price_changes.mrr_local = 0) as plans_removed
    from price_changes
    left join prices
        on price_changes.billing_account = prices.billing_account and price_changes.price_id = prices.price_id
    left join products
        on prices.billing_account = products.billing_account and prices.product_id = products.product_id
    group by price_changes.customer_id, (price_changes.changed_at at time zone 'UTC')::date
),

-- health band of each complete week, and the band of the week before (per account of the customer)
band_weeks as (
    select
        accounts.customer_id,
        weeks.account_id,
        weeks.week_start,
        weeks.health_band,
        lag(weeks.health_band) over (
            partition by accounts.customer_id, weeks.account_id order by weeks.week_start
        ) as previous_band
    from accounts
    inner join weeks
        on accounts.account_id = weeks.account_id
    where weeks.is_complete_week
),

events as (
    select
        customer_id::text as customer_id,
        signed_up_at as event_at,
        1 as kind_order,
        'signup' as event_type,
        null::numeric as mrr_before,
        null::numeric as mrr_after,
        null::text as plans_added,
        null::text as plans_removed,
        null::text as detail
    from journeys

    union all

    select
        customer_id::text as customer_id,
        trial_started_at as event_at,
        2 as kind_order,
        'trial_started' as event_type,
        null as mrr_before,
        null as mrr_after,
        null as plans_added,
        null as plans_removed,
        null as detail
    from journeys
    where trial_started_at is not null

    union all

    select
        customer_id::text as customer_id,
        activated_date::timestamp at time zone 'UTC' as event_at,
        3 as kind_order,
        'activated' as event_type,
        null as mrr_before,
        null as mrr_after,
        null as plans_added,
        null as plans_removed,
        null as detail
    from journeys
    where activated_date is not null

    union all

    select
        movements.customer_id::text as customer_id,
        movements.movement_date::timestamp at time zone 'UTC' as event_at,
        7 as kind_order,
        movements.movement_type as event_type,
        movements.mrr_before,
        movements.mrr_after,
        plan_changes.plans_added,
        plan_changes.plans_removed,
        null as detail
    from movements
    left join plan_changes
        on movements.customer_id = plan_changes.customer_id
        and movements.movement_date = plan_changes.change_date

    union all

    select
        customer_id::text as customer_id,
        week_start::timestamp at time zone 'UTC' as event_at,
        8 as kind_order,
        'health_band_changed' as event_type,
        null as mrr_before,
        null as mrr_after,
        null as plans_added,
        null as plans_removed,
        previous_band || ' -> ' || health_band as detail
    from band_weeks
    where previous_band is not null and previous_band <> health_band

    union all

    -- a failed payment: an invoice with an amount due not paid within a day of being issued
    select
        customer_id::text as customer_id,
        created_at as event_at,
        4 as kind_order,
        'payment_failed' as event_type,
        null as mrr_before,
        null as mrr_after,
        null as plans_added,
        null as plans_removed,
        invoice_id as detail
    from invoices
    where amount_due_cents > 0
        and (
            (status = 'paid' and paid_at > created_at + interval '1 day')
            or (status in ('open', 'uncollectible') and created_at < {{ as_of_timestamp() }} - interval '1 day')
        )

    union all

    select
        customer_id::text as customer_id,
        canceled_at as event_at,
        5 as kind_order,
        'cancellation_requested' as event_type,
        null as mrr_before,
        null as mrr_after,
        null as plans_added,
        null as plans_removed,
        subscription_id as detail
    from subscriptions
    where canceled_at is not null

    union all

    select
        customer_id::text as customer_id,
        ended_at as event_at,
        6 as kind_order,
        'subscription_ended' as event_type,
        null as mrr_before,
        null as mrr_after,
        null as plans_added,
        null as plans_removed,
        subscription_id as detail
    from subscriptions
    where ended_at is not null
),

final as (
    select
        customer_id::text as customer_id,
        -- by day, then by kind (movements are known by the day only), then by time
        row_number() over (
            partition by customer_id
            order by (event_at at time zone 'UTC')::date, kind_order, event_at, detail
        ) as event_order,
        event_at,
        (event_at at time zone 'UTC')::date as event_date,
        event_type,
        mrr_before,
        mrr_after,
        mrr_after - mrr_before as mrr_change,
        plans_added,
        plans_removed,
        detail
    from events
)

select * from final
