-- Per signup month, the journey signup -> trial -> activated -> first paid -> first expansion -> churn:
-- how many reached each step, their share, and the median days between steps (METRICS.md
-- "Customer journey"). One row per signup month and step.
with

journeys as (
    select * from {{ ref('int_customer_journey') }}
),

steps as (
    select
        journeys.customer_id,
        journeys.signup_month,
        journeys.signup_date,
        journeys.is_activation_judged,
        step.step_order,
        step.step,
        step.step_date,
        lag(step.step_date) over (partition by journeys.customer_id order by step.step_order) as previous_step_date
    from journeys
    cross join lateral (
        values
        (1, 'signup', journeys.signup_date),
        (2, 'trial', (journeys.trial_started_at at time zone 'UTC')::date),
        (3, 'activated', journeys.activated_date),
        (4, 'first_paid', journeys.first_paid_date),
        (5, 'first_expansion', journeys.first_expansion_date),
        (6, 'churn', journeys.first_churn_date)
    ) as step (step_order, step, step_date)
),

aggregated as (
    select
        signup_month,
        step_order,
        step,
        count(*) as signups,
        count(step_date) as customers,
        count(*) filter (where is_activation_judged) as judged_signups,
        count(*) filter (where step_date is not null and previous_step_date is not null) as from_previous_step,
        count(previous_step_date) as reached_previous_step,
        percentile_cont(0.5) within group (order by step_date - previous_step_date) as median_days_from_previous_step,
        percentile_cont(0.5) within group (order by step_date - signup_date) as median_days_from_signup
    from steps
    group by signup_month, step_order, step
),

final as (
    select
        signup_month,
        step_order,
        step,
        signups,
        -- activation is unknown for a cohort that signed up before product events began
        case when step = 'activated' and judged_signups = 0 then null else customers end as customers,
        case when step = 'activated' and judged_signups = 0 then null
            else round(customers::numeric / signups, 4)
        end as share_of_signups,
        case when step = 'activated' and judged_signups = 0 then null
            else round(from_previous_step::numeric / nullif(reached_previous_step, 0), 4) end
            as share_of_previous_step,
        round(median_days_from_previous_step::numeric, 1) as median_days_from_previous_step,
        round(median_days_from_signup::numeric, 1) as median_days_from_signup
    from aggregated
)

select * from final
