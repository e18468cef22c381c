-- Invoice items (/v1/invoiceitems): pending ones (`invoice` null, e.g. the prorations of a change made with
-- Stripe's default `create_prorations`, invoiced at the next renewal) and invoiced ones; an item Stripe
-- deleted (the change undone) is loaded from its `invoiceitem.deleted` event with `deleted: true`.
-- Current shape (parent.subscription_details, pricing.price_details, quantity_decimal) and the legacy one
-- (subscription, subscription_item, price/plan, quantity). Small: a view.
with

source as (
    select * from {{ source('stripe', 'invoiceitems') }}
),

final as (
    select
        -- ids
        id as invoice_item_id,
        account as billing_account,
        coalesce(data -> 'customer' ->> 'id', data ->> 'customer') as customer_id,
        coalesce(
            data -> 'parent' -> 'subscription_details' ->> 'subscription',
            data -> 'subscription' ->> 'id',
            data ->> 'subscription'
        ) as subscription_id,
        coalesce(
            data -> 'parent' -> 'subscription_details' ->> 'subscription_item',
            data ->> 'subscription_item'
        ) as subscription_item_id,
        coalesce(data -> 'invoice' ->> 'id', data ->> 'invoice') as invoice_id,
        coalesce(
            data -> 'pricing' -> 'price_details' ->> 'price',
            data -> 'price' ->> 'id',
            data -> 'plan' ->> 'id'
        ) as price_id,
        -- attributes
        coalesce((data ->> 'proration')::boolean, false) as is_proration,
        coalesce((data ->> 'deleted')::boolean, false) as is_deleted,
        lower(data ->> 'currency') as currency,
        coalesce((data ->> 'quantity_decimal')::numeric, (data ->> 'quantity')::numeric, 1) as quantity,
        -- amounts (minor units): the prorated, signed amount
        (data ->> 'amount')::bigint as amount_cents,
        -- timestamps
        {{ from_unix("data -> 'period' ->> 'start'") }} as period_start_at,
        {{ from_unix("data -> 'period' ->> 'end'") }} as period_end_at,
        coalesce(created, {{ from_unix("data ->> 'date'") }}) as created_at,
        synced_at
    from source
)

select * from final
