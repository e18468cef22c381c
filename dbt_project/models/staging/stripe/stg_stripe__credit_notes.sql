with

source as (
    select * from {{ source('stripe', 'credit_notes') }}
),

final as (
    select
        id as credit_note_id,
        account as billing_account,
        coalesce(data -> 'invoice' ->> 'id', data ->> 'invoice') as invoice_id,
        coalesce(data -> 'customer' ->> 'id', data ->> 'customer') as customer_id,
        data ->> 'status' as status,
        data ->> 'reason' as reason,
        lower(data ->> 'currency') as currency,
        (data ->> 'total')::bigint as total_cents,
        created as created_at,
        synced_at
    from source
)

select * from final
