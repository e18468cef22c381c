-- Customer acquisition cost per month and acquisition channel, blended and paid (METRICS.md "CAC per
-- channel"). A channel with new customers but no spend row (organic) has spend 0 in a month the spend
-- file covers; a channel with spend and no new customer has a row too.
with

movements as (
    select * from {{ ref('int_customer_mrr_movements') }}
    where movement_type = 'new'
),

customers as (
    select * from {{ ref('billing_customers') }}
),

spend as (
    select * from {{ ref('stg_finance__marketing_spend') }}
),

margins as (
    select * from {{ ref('stg_finance__gross_margin') }}
),

kpis as (
    select * from {{ ref('saas_kpis_monthly') }}
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

new_customers as (
    select
        movements.movement_month as month,
        coalesce(lower(nullif(customers.metadata ->> 'channel', '')), '(none)') as channel,
        count(*) as new_customers,
        sum(movements.mrr_change) as new_mrr
    from movements
    left join customers
        on movements.customer_id = customers.customer_id
    group by
        movements.movement_month,
        coalesce(lower(nullif(customers.metadata ->> 'channel', '')), '(none)')
),

channel_spend as (
    select
        spend.month,
        spend.channel,
        sum(spend.amount * {{ fx_rate('spend.currency', 'fx.rate') }}) as spend
    from spend
    left join fx
        on spend.month = fx.rate_date
        and spend.currency = fx.currency
    group by spend.month, spend.channel
),

spend_months as (
    select distinct month from channel_spend
),

channels as (
    select
        coalesce(new_customers.month, channel_spend.month) as month,
        coalesce(new_customers.channel, channel_spend.channel) as channel,
        coalesce(new_customers.new_customers, 0) as new_customers,
        coalesce(new_customers.new_mrr, 0) as new_mrr,
        -- a month the spend file covers: a channel without a row spent nothing
        case
            when channel_spend.spend is not null then channel_spend.spend
            when spend_months.month is not null then 0
        end as spend
    from new_customers
    full outer join channel_spend
        on new_customers.month = channel_spend.month
        and new_customers.channel = channel_spend.channel
    left join spend_months
        on coalesce(new_customers.month, channel_spend.month) = spend_months.month
),

monthly as (
    select
        month,
        sum(spend) as total_spend,
        sum(new_customers) as total_new_customers,
        sum(spend) filter (where spend > 0) as paid_spend,
        sum(new_customers) filter (where spend > 0) as paid_new_customers
    from channels
    group by month
),

final as (
    select
        channels.month,
        channels.channel,
        channels.spend > 0 as is_paid_channel,
        channels.new_customers,
        round(channels.new_mrr, 4) as new_mrr,
        round(channels.spend, 4) as spend,
        round(channels.spend / nullif(channels.new_customers, 0), 4) as cac,
        round(channels.new_mrr / nullif(channels.new_customers, 0), 4) as new_mrr_per_customer,
        margins.gross_margin,
        round(
            channels.spend / nullif(channels.new_customers, 0)
            / nullif(channels.new_mrr / nullif(channels.new_customers, 0) * margins.gross_margin, 0), 4)
            as cac_payback_months,
        kpis.ltv_gross_margin,
        round(kpis.ltv_gross_margin / nullif(channels.spend / nullif(channels.new_customers, 0), 0), 4)
            as ltv_to_cac,
        round(monthly.total_spend / nullif(monthly.total_new_customers, 0), 4) as blended_cac,
        round(monthly.paid_spend / nullif(monthly.paid_new_customers, 0), 4) as paid_cac
    from channels
    left join monthly
        on channels.month = monthly.month
    left join margins
        on channels.month = margins.month
    left join kpis
        on channels.month = kpis.month
)

select * from final
