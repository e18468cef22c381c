-- Renewals of subscriptions billed for more than a month at a time (quarterly, half-yearly, annual),
-- judged at the end of each term, and the renewal calendar of the next 12 months
-- (METRICS.md "Renewals"). One row per month and per quarter.
with

-- the terms: the billing periods of cycle invoices of prices billed for more than one month
lines as (
    select
        subscription_id,
        period_end_at,
        recurring_interval,
        recurring_interval_count
    from {{ ref('int_invoice_lines_classified') }}
    where {{ multi_month_cycle_lines() }}
),

changes as (
    select * from {{ ref('int_subscription_prices_mrr_changes') }}
),

subscriptions as (
    select * from {{ ref('billing_subscriptions') }}
),

fx as (
    select * from {{ ref('int_fx_rates_daily') }}
),

as_of as (
    select
        {{ as_of_timestamp() }} as as_of_at,
        ({{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_date,
        date_trunc('month', {{ as_of_timestamp() }} at time zone 'UTC')::date as as_of_month
),

terms as (
    select
        subscription_id,
        period_end_at as term_end_at,
        max(recurring_interval) as recurring_interval,
        max(recurring_interval_count) as recurring_interval_count
    from lines
    group by subscription_id, period_end_at
),

-- each subscription's MRR (all its prices) as a step function, for the subscriptions with terms
subscription_changes as (
    select
        subscription_id,
        changed_at,
        min(currency) as currency,
        sum(mrr_change_local) as mrr_change_local
    from changes
    where subscription_id in (select terms.subscription_id from terms)
    group by subscription_id, changed_at
),

levels as (
    select
        subscription_id,
        currency,
        changed_at as valid_from,
        lead(changed_at) over subscription_history as valid_to,
        sum(mrr_change_local) over (
            subscription_history rows between unbounded preceding and current row
        ) as mrr_local
    from subscription_changes
    window subscription_history as (partition by subscription_id order by changed_at)
),

-- terms that have ended: the level just before the end, at the end, and whether it fell to zero within
-- past_due_grace_days after it (a renewal invoice never paid)
ended_terms as (
    select
        terms.subscription_id,
        terms.term_end_at,
        max(levels.currency) as currency,
        coalesce(max(levels.mrr_local) filter (
            where levels.valid_from < terms.term_end_at
            and (levels.valid_to is null or levels.valid_to >= terms.term_end_at)
        ), 0) as before_local,
        coalesce(max(levels.mrr_local) filter (
            where levels.valid_from <= terms.term_end_at
            and (levels.valid_to is null or levels.valid_to > terms.term_end_at)
        ), 0) as after_local,
        coalesce(bool_or(levels.mrr_local <= 0) filter (
            where levels.valid_from > terms.term_end_at
            and levels.valid_from <= terms.term_end_at + interval '{{ var("past_due_grace_days") }} days'
        ), false) as lapsed_after_renewal
    from terms
    cross join as_of
    inner join levels
        on terms.subscription_id = levels.subscription_id
        and levels.valid_from < terms.term_end_at + interval '{{ var("past_due_grace_days") }} days'
        and (levels.valid_to is null or terms.term_end_at <= levels.valid_to)
    where terms.term_end_at <= as_of.as_of_at
    group by terms.subscription_id, terms.term_end_at
),

decided as (
    select
        ended_terms.subscription_id,
        ended_terms.term_end_at,
        ended_terms.currency,
        ended_terms.before_local,
        case when ended_terms.lapsed_after_renewal then 0 else ended_terms.after_local end as after_local,
        ended_terms.after_local <= 0 or ended_terms.lapsed_after_renewal as is_churned,
        coalesce(subscriptions.canceled_at < ended_terms.term_end_at, false) as is_known_non_renewal
    from ended_terms
    left join subscriptions
        on ended_terms.subscription_id = subscriptions.subscription_id
    where ended_terms.before_local > 0
),

-- the current term of each subscription still counting today, and the terms after it within 12 months
current_terms as (
    select
        terms.subscription_id,
        terms.term_end_at,
        terms.recurring_interval,
        terms.recurring_interval_count,
        levels.currency,
        levels.mrr_local as before_local,
        subscriptions.is_cancel_at_period_end,
        subscriptions.cancel_at
    from terms
    cross join as_of
    inner join levels
        on terms.subscription_id = levels.subscription_id
        and as_of.as_of_at >= levels.valid_from
        and (levels.valid_to is null or as_of.as_of_at < levels.valid_to)
    inner join subscriptions
        on terms.subscription_id = subscriptions.subscription_id
    where terms.term_end_at > as_of.as_of_at
        and levels.mrr_local > 0
        and subscriptions.ended_at is null
),

upcoming as (
    select
        current_terms.subscription_id,
        current_terms.currency,
        current_terms.before_local,
        steps.step,
        current_terms.term_end_at + steps.step * case current_terms.recurring_interval
            when 'year' then current_terms.recurring_interval_count * interval '1 year'
            else current_terms.recurring_interval_count * interval '1 month'
        end as term_end_at,
        current_terms.term_end_at + (steps.step - 1) * case current_terms.recurring_interval
            when 'year' then current_terms.recurring_interval_count * interval '1 year'
            else current_terms.recurring_interval_count * interval '1 month'
        end as previous_term_end_at,
        current_terms.is_cancel_at_period_end,
        current_terms.cancel_at
    from current_terms
    cross join lateral generate_series(0, 12) as steps (step)
),

scheduled as (
    select
        upcoming.subscription_id,
        upcoming.term_end_at,
        upcoming.currency,
        upcoming.before_local,
        (upcoming.step = 0 and upcoming.is_cancel_at_period_end)
        or coalesce(upcoming.cancel_at <= upcoming.term_end_at, false) as is_known_non_renewal
    from upcoming
    cross join as_of
    where (upcoming.term_end_at at time zone 'UTC')::date
        < (as_of.as_of_month + interval '13 months')::date
        -- nothing is due after a scheduled cancellation
        and (upcoming.step = 0 or not (
            upcoming.is_cancel_at_period_end
            or coalesce(upcoming.cancel_at <= upcoming.previous_term_end_at, false)
        ))
),

all_terms as (
    select
        subscription_id,
        term_end_at,
        currency,
        before_local,
        after_local,
        true as is_decided,
        is_churned,
        is_known_non_renewal
    from decided
    union all
    select
        subscription_id,
        term_end_at,
        currency,
        before_local,
        null::numeric as after_local,
        false as is_decided,
        null::boolean as is_churned,
        is_known_non_renewal
    from scheduled
),

-- valued at the rate of the term's last day (today's for terms still to come)
valued as (
    select
        all_terms.*,
        (all_terms.term_end_at at time zone 'UTC')::date as term_end_date,
        round(all_terms.before_local * {{ fx_rate('all_terms.currency', 'fx.rate') }}, 4) as mrr_before,
        round(all_terms.after_local * {{ fx_rate('all_terms.currency', 'fx.rate') }}, 4) as mrr_after
    from all_terms
    cross join as_of
    left join fx
        on all_terms.currency = fx.currency
        and fx.rate_date = least((all_terms.term_end_at at time zone 'UTC')::date, as_of.as_of_date)
),

periods as (
    select
        valued.*,
        grains.period_type,
        date_trunc(grains.period_type, valued.term_end_date)::date as period_start
    from valued
    cross join (values ('month'), ('quarter')) as grains (period_type)
),

spine as (
    select
        grains.period_type,
        series.period_start::date as period_start
    from as_of
    cross join (values ('month'), ('quarter')) as grains (period_type)
    cross join lateral generate_series(
        date_trunc(grains.period_type, least(
            coalesce((select min(term_end_date) from valued), as_of.as_of_month), as_of.as_of_month
        )),
        date_trunc(grains.period_type, as_of.as_of_month + interval '12 months'),
        case grains.period_type when 'month' then interval '1 month' else interval '3 months' end
    ) as series (period_start)
),

aggregated as (
    select
        period_type,
        period_start,
        count(*) as renewals_due,
        sum(mrr_before) as mrr_up_for_renewal,
        count(*) filter (where is_known_non_renewal) as known_non_renewals,
        coalesce(sum(mrr_before) filter (where is_known_non_renewal), 0) as known_non_renewal_mrr,
        count(*) filter (where is_decided) as renewals_decided,
        count(*) filter (where is_decided and not is_churned) as renewed,
        count(*) filter (where is_decided and not is_churned and mrr_after > mrr_before) as renewed_higher,
        count(*) filter (where is_decided and not is_churned and mrr_after < mrr_before) as renewed_lower,
        count(*) filter (where is_decided and is_churned) as churned,
        coalesce(sum(mrr_before) filter (where is_decided), 0) as decided_mrr_before,
        coalesce(sum(mrr_after) filter (where is_decided and not is_churned), 0) as renewed_mrr,
        coalesce(sum(mrr_before) filter (where is_decided and is_churned), 0) as churned_mrr
    from periods
    group by period_type, period_start
),

final as (
    select
        spine.period_type,
        spine.period_start,
        (spine.period_start + case spine.period_type when 'month' then interval '1 month'
            else interval '3 months'
        end)::date <= as_of.as_of_month as is_complete_period,
        spine.period_start > as_of.as_of_month as is_future_period,
        coalesce(aggregated.renewals_due, 0) as renewals_due,
        coalesce(aggregated.mrr_up_for_renewal, 0) as mrr_up_for_renewal,
        coalesce(aggregated.known_non_renewals, 0) as known_non_renewals,
        coalesce(aggregated.known_non_renewal_mrr, 0) as known_non_renewal_mrr,
        coalesce(aggregated.renewals_decided, 0) as renewals_decided,
        coalesce(aggregated.renewed, 0) as renewed,
        coalesce(aggregated.renewed_higher, 0) as renewed_higher,
        coalesce(aggregated.renewed_lower, 0) as renewed_lower,
        coalesce(aggregated.churned, 0) as churned,
        coalesce(aggregated.decided_mrr_before, 0) as decided_mrr,
        coalesce(aggregated.renewed_mrr, 0) as renewed_mrr,
        coalesce(aggregated.churned_mrr, 0) as churned_mrr,
        round(aggregated.renewed::numeric / nullif(aggregated.renewals_decided, 0), 4) as logo_renewal_rate,
        round(aggregated.renewed_mrr / nullif(aggregated.decided_mrr_before, 0), 4) as revenue_renewal_rate
    from spine
    cross join as_of
    left join aggregated
        on spine.period_type = aggregated.period_type
        and spine.period_start = aggregated.period_start
)

select * from final
