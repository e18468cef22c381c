-- One row per Stripe customer: the first day it reached each step of the journey (METRICS.md
-- "Customer journey"): signup, trial, activation, first payment, first expansion, first churn.
-- Read by signup_funnel (all customers) and customer_timeline (one customer, through the index).
{{ config(indexes=[{'columns': ['customer_id'], 'unique': True}]) }}

with

customers as (
    select * from {{ ref('billing_customers') }}
),

subscriptions as (
    select * from {{ ref('billing_subscriptions') }}
),

movements as (
    select * from {{ ref('int_customer_mrr_movements') }}
),

accounts as (
    select * from {{ ref('int_product_accounts') }}
),

event_days as (
    select * from {{ ref('int_product_account_event_days') }}
),

history_start as (
    select min(first_seen_date) as first_event_date
    from accounts
),

trials as (
    select
        customer_id,
        min(trial_started_at) as trial_started_at
    from subscriptions
    where trial_started_at is not null
    group by customer_id
),

firsts as (
    select
        customer_id,
        min(movement_date) filter (where movement_type = 'new') as first_paid_date,
        min(movement_date) filter (where movement_type = 'expansion') as first_expansion_date,
        min(movement_date) filter (where movement_type = 'churn') as first_churn_date
    from movements
    group by customer_id
),

-- activation as in METRICS.md "Activation": every activation action within activation_days of signup;
-- its day is the day the last of them was first done
account_actions as (
    select
        accounts.customer_id,
        accounts.account_id,
        event_days.event_name,
        min(event_days.activity_date) as first_done_date
    from accounts
    inner join customers
        on accounts.customer_id = customers.customer_id
    inner join event_days
        on accounts.account_id = event_days.account_id
        and event_days.activity_date >= (customers.created_at at time zone 'UTC')::date
        and event_days.activity_date < (customers.created_at at time zone 'UTC')::date + {{ var('activation_days') }}
    where event_days.event_name in {{ sql_list(var('activation_actions')) }}
    group by accounts.customer_id, accounts.account_id, event_days.event_name
),

activations as (
    select
        customer_id,
        min(activated_date) as activated_date
    from (
        select
            customer_id,
            account_id,
            max(first_done_date) as activated_date
        from account_actions
        group by customer_id, account_id
        having count(*) = {{ var('activation_actions') | length }}
    ) as activated_accounts
    group by customer_id
),

final as (
    select
        -- ids
        customers.customer_id,
        -- dates of each step
        customers.created_at as signed_up_at,
        (customers.created_at at time zone 'UTC')::date as signup_date,
        date_trunc('month', customers.created_at at time zone 'UTC')::date as signup_month,
        trials.trial_started_at,
        activations.activated_date,
        -- activation can be judged only for signups on or after the first day of product events
        coalesce((customers.created_at at time zone 'UTC')::date >= history_start.first_event_date, false)
            as is_activation_judged,
        firsts.first_paid_date,
        firsts.first_expansion_date,
        firsts.first_churn_date
    from customers
    cross join history_start
    left join trials
        on customers.customer_id = trials.customer_id
    left join firsts
        on customers.customer_id = firsts.customer_id
    left join activations
        on customers.customer_id = activations.customer_id
    where not customers.is_deleted
)

select * from final
