"""Churn prediction (METRICS.md "Churn prediction"): point-in-time features of every paying customer at
a scoring date, a scikit-learn gradient-boosting classifier of "churns within 90 days", its time-split
backtest against the rule-based `churn_risk` flags, and nightly scores with each customer's top reasons.

The SQL aggregates in PostgreSQL (one row per customer and scoring date); everything else is pure
functions on pandas frames, so a test can hand them a history whose outcome is known.
"""

from __future__ import annotations

import datetime as dt
import io
import pickle
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

LABEL_DAYS = 90
MIN_CHURNS = 20  # fewer churns than this among the labelled rows: no model
MIN_SCORING_DATES = 2
TRAINING_MONTHS = 12  # a model learns from the last 12 month ends with a known outcome
MAX_TRAINING_ROWS = 200_000  # more labelled rows than this: a seeded random sample (bounded training time)
HIGH_RISK = 0.30  # probability at or above: risk band 'high'
MEDIUM_RISK = 0.10  # at or above: 'medium'; below: 'low'
# the rules of churn_risk, replayed at a scoring date (METRICS.md "Churn risk")
RULE_USAGE_DROP = 0.5
RULE_MIN_WEEKLY_EVENTS = 5
RULE_CARD_DAYS = 30

FEATURES = {
    # billing
    "mrr": "MRR at the scoring date",
    "tenure_days": "days since the first paid day",
    "mrr_change_90d": "MRR change over the last 90 days, as a share of MRR 90 days before",
    "expansions_180d": "expansions in the last 180 days",
    "contractions_180d": "contractions in the last 180 days",
    "reactivations": "reactivations so far",
    "is_annual": "pays for a yearly price",
    "has_discount": "its last invoice carried a discount",
    "unpaid_invoices_90d": "invoices of the last 90 days not paid by the scoring date",
    "days_to_card_expiry": "days until the default card expires (negative: expired)",
    # product usage
    "events_4w": "events of the last 4 complete weeks",
    "activity_trend": "events of the last 4 weeks over the 4 before (log ratio)",
    "key_actions_4w": "key actions of the last 4 complete weeks",
    "active_users_last_week": "active users of the last complete week",
    "seat_use": "active users over seats, last complete week",
    "admin_days_2w": "days with admin activity in the last 2 complete weeks",
    "health_score": "health score of the last complete week",
}
FEATURE_NAMES = list(FEATURES)

# one row per customer paying at each scoring date, with its features, the rule flags as they stood
# then, and whether it churned within LABEL_DAYS after
FEATURES_SQL = """
with
dates as (
    select unnest(%(dates)s::date[]) as scoring_date
),
paying as (
    select dates.scoring_date, monthly.customer_id, monthly.mrr
    from dates
    inner join marts.customer_mrr_monthly as monthly
        on monthly.month = date_trunc('month', dates.scoring_date)::date
    where monthly.mrr > 0 and dates.scoring_date < %(today)s
    union all
    select dates.scoring_date, current_mrr.customer_id, current_mrr.mrr
    from dates
    inner join marts.customer_mrr_current as current_mrr
        on current_mrr.is_paying
    where dates.scoring_date >= %(today)s
),
-- only the months 90 days before a scoring date: a join to every customer month sorts the whole table
months_ago as (
    select monthly.customer_id, monthly.month, monthly.mrr
    from marts.customer_mrr_monthly as monthly
    where monthly.month in (select date_trunc('month', dates.scoring_date - 90)::date from dates)
),
ago as (
    select paying.scoring_date, paying.customer_id, coalesce(months_ago.mrr, 0) as mrr_90d_ago
    from paying
    left join months_ago
        on months_ago.customer_id = paying.customer_id
        and months_ago.month = date_trunc('month', paying.scoring_date - 90)::date
),
moves as (
    select
        paying.scoring_date,
        paying.customer_id,
        -- what was known at the scoring date; the join reaches 90 days further for the label only
        count(*) filter (where movements.movement_type = 'expansion'
            and movements.movement_date > paying.scoring_date - 180
            and movements.movement_date <= paying.scoring_date) as expansions_180d,
        count(*) filter (where movements.movement_type = 'contraction'
            and movements.movement_date > paying.scoring_date - 180
            and movements.movement_date <= paying.scoring_date) as contractions_180d,
        count(*) filter (where movements.movement_type = 'reactivation'
            and movements.movement_date <= paying.scoring_date) as reactivations,
        min(movements.movement_date) filter (where movements.movement_type = 'new') as first_paid_date,
        bool_or(movements.movement_type = 'churn' and movements.movement_date > paying.scoring_date
            and movements.movement_date <= paying.scoring_date + %(label_days)s) as churned
    from paying
    inner join marts.mrr_movements as movements
        on movements.customer_id = paying.customer_id
        and movements.movement_date <= paying.scoring_date + %(label_days)s
    group by 1, 2
),
invoices as (
    select
        paying.scoring_date,
        paying.customer_id,
        count(*) filter (where invoices.created_at::date > paying.scoring_date - 90
            and invoices.amount_due_cents > 0
            and (invoices.paid_at is null or invoices.paid_at::date > paying.scoring_date)
            and (invoices.voided_at is null or invoices.voided_at::date > paying.scoring_date)
            and invoices.status <> 'draft') as unpaid_invoices_90d,
        -- the last invoice's discount; of invoices at the same second, a discount on any of them (first)
        (array_agg(invoices.subtotal_cents + coalesce(invoices.tax_cents, 0) > invoices.total_cents
            order by invoices.created_at desc,
                invoices.subtotal_cents + coalesce(invoices.tax_cents, 0) > invoices.total_cents desc))[1]
            as has_discount
    from paying
    inner join staging.stg_stripe__invoices as invoices
        on invoices.customer_id = paying.customer_id
        and invoices.created_at::date <= paying.scoring_date
        and invoices.created_at::date > paying.scoring_date - 400
    group by 1, 2
),
annual as (
    select distinct paying.scoring_date, paying.customer_id
    from paying
    inner join staging.stg_stripe__subscriptions as subscriptions
        on subscriptions.customer_id = paying.customer_id
        and subscriptions.started_at::date <= paying.scoring_date
        and (subscriptions.ended_at is null or subscriptions.ended_at::date > paying.scoring_date)
    inner join staging.stg_stripe__subscription_items as items
        on items.subscription_id = subscriptions.subscription_id
    inner join staging.stg_stripe__prices as prices
        on prices.billing_account = items.billing_account and prices.price_id = items.price_id
    where prices.recurring_interval = 'year'
),
weeks as (
    select
        weekly.customer_id,
        weekly.week_start,
        sum(weekly.events) as events,
        sum(weekly.key_actions) as key_actions,
        sum(weekly.active_users) as active_users,
        sum(weekly.seats) as seats,
        avg(weekly.health_score) as health_score
    from marts.account_engagement_weekly as weekly
    where weekly.customer_id is not null
        and weekly.week_start >= (select min(scoring_date) from dates) - 70
    group by 1, 2
),
-- the two complete weeks before each scoring date: the only days whose admin activity is read
admin_windows as (
    select distinct
        date_trunc('week', scoring_date + 1)::date - 14 as window_start,
        date_trunc('week', scoring_date + 1)::date as window_end
    from dates
),
admin_weeks as (
    select
        accounts.customer_id,
        date_trunc('week', user_days.activity_date)::date as week_start,
        count(distinct user_days.activity_date) as admin_days
    from admin_windows
    inner join intermediate.int_product_user_days as user_days
        on user_days.activity_date >= admin_windows.window_start
        and user_days.activity_date < admin_windows.window_end
    inner join intermediate.int_product_accounts as accounts
        on accounts.account_id = user_days.account_id
    where user_days.has_admin_event and accounts.customer_id is not null
    group by 1, 2
),
usage as (
    select
        paying.scoring_date,
        paying.customer_id,
        -- weeks ending by the scoring date, counted back from the last complete one (1)
        sum(weeks.events) filter (where weeks.week_start >= last_week.start - 21) as events_4w,
        sum(weeks.events) filter (where weeks.week_start < last_week.start - 21) as events_prev_4w,
        sum(weeks.key_actions) filter (where weeks.week_start >= last_week.start - 21) as key_actions_4w,
        sum(weeks.events) filter (where weeks.week_start = last_week.start) as events_last_week,
        sum(weeks.events) filter (where weeks.week_start = last_week.start - 7) as events_week_before,
        sum(weeks.key_actions) filter (where weeks.week_start >= last_week.start - 7) as key_actions_2w,
        max(weeks.active_users) filter (where weeks.week_start = last_week.start) as active_users_last_week,
        max(weeks.seats) filter (where weeks.week_start = last_week.start) as seats_last_week,
        max(weeks.health_score) filter (where weeks.week_start = last_week.start) as health_score
    from paying
    cross join lateral (
        select date_trunc('week', paying.scoring_date + 1)::date - 7 as start
    ) as last_week
    inner join weeks
        on weeks.customer_id = paying.customer_id
        and weeks.week_start between last_week.start - 49 and last_week.start
    group by 1, 2
),
admins as (
    select paying.scoring_date, paying.customer_id, sum(admin_weeks.admin_days) as admin_days_2w
    from paying
    inner join admin_weeks
        on admin_weeks.customer_id = paying.customer_id
        and admin_weeks.week_start between date_trunc('week', paying.scoring_date + 1)::date - 14
            and date_trunc('week', paying.scoring_date + 1)::date - 7
    group by 1, 2
)
select
    paying.customer_id,
    paying.scoring_date,
    paying.mrr::float8 as mrr,
    (paying.scoring_date - coalesce(moves.first_paid_date, paying.scoring_date))::float8 as tenure_days,
    case when ago.mrr_90d_ago > 0 then ((paying.mrr - ago.mrr_90d_ago) / ago.mrr_90d_ago)::float8 end
        as mrr_change_90d,
    coalesce(moves.expansions_180d, 0)::float8 as expansions_180d,
    coalesce(moves.contractions_180d, 0)::float8 as contractions_180d,
    coalesce(moves.reactivations, 0)::float8 as reactivations,
    (annual.customer_id is not null)::int::float8 as is_annual,
    coalesce(invoices.has_discount, false)::int::float8 as has_discount,
    coalesce(invoices.unpaid_invoices_90d, 0)::float8 as unpaid_invoices_90d,
    (customers.default_card_expires_on - paying.scoring_date)::float8 as days_to_card_expiry,
    coalesce(usage.events_4w, 0)::float8 as events_4w,
    ln((coalesce(usage.events_4w, 0) + 1.0) / (coalesce(usage.events_prev_4w, 0) + 1.0))::float8 as activity_trend,
    coalesce(usage.key_actions_4w, 0)::float8 as key_actions_4w,
    coalesce(usage.active_users_last_week, 0)::float8 as active_users_last_week,
    case when usage.seats_last_week > 0
        then (usage.active_users_last_week::numeric / usage.seats_last_week)::float8 end as seat_use,
    coalesce(admins.admin_days_2w, 0)::float8 as admin_days_2w,
    usage.health_score::float8 as health_score,
    -- the churn_risk rules as they stood at the scoring date
    (coalesce(usage.events_week_before, 0) >= %(min_weekly_events)s
        and coalesce(usage.events_last_week, 0) <= %(usage_drop)s * usage.events_week_before) as is_usage_drop,
    (coalesce(usage.key_actions_2w, 0) = 0) as is_no_recent_key_action,
    (coalesce(admins.admin_days_2w, 0) = 0) as is_admin_inactive,
    coalesce(customers.default_card_expires_on <= paying.scoring_date + %(card_days)s, false) as is_card_expiring,
    case when paying.scoring_date + %(label_days)s <= %(today)s then coalesce(moves.churned, false) end
        as churned_within_90_days
from paying
left join ago
    on ago.scoring_date = paying.scoring_date and ago.customer_id = paying.customer_id
left join moves
    on moves.scoring_date = paying.scoring_date and moves.customer_id = paying.customer_id
left join invoices
    on invoices.scoring_date = paying.scoring_date and invoices.customer_id = paying.customer_id
left join annual
    on annual.scoring_date = paying.scoring_date and annual.customer_id = paying.customer_id
left join usage
    on usage.scoring_date = paying.scoring_date and usage.customer_id = paying.customer_id
left join admins
    on admins.scoring_date = paying.scoring_date and admins.customer_id = paying.customer_id
left join staging.stg_stripe__customers as customers
    on customers.customer_id = paying.customer_id
order by paying.scoring_date, paying.customer_id
"""

RULE_COLUMNS = ["is_usage_drop", "is_no_recent_key_action", "is_admin_inactive", "is_card_expiring"]


def read_features(conn, dates: list[dt.date], today: dt.date, marts_schema: str = "marts") -> pd.DataFrame:
    """Features of every customer paying at each of `dates` (month ends before today: from
    customer_mrr_monthly; today: customer_mrr_current), labelled where 90 days have passed. `marts_schema`:
    where the marts are read (a refresh reads its own build before publishing it: orchestration/defs/publish.py)."""
    params = {
        "dates": [d.isoformat() for d in dates],
        "today": today,
        "label_days": LABEL_DAYS,
        "usage_drop": RULE_USAGE_DROP,
        "min_weekly_events": RULE_MIN_WEEKLY_EVENTS,
        "card_days": RULE_CARD_DAYS,
    }
    with conn.cursor() as cur:
        cur.execute(FEATURES_SQL.replace("marts.", f"{marts_schema}."), params)
        columns = [c.name for c in cur.description]
        frame = pd.DataFrame(cur.fetchall(), columns=columns)
    for name in FEATURE_NAMES:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    frame["scoring_date"] = pd.to_datetime(frame["scoring_date"]).dt.date
    return frame


def scoring_dates(history_start: dt.date, today: dt.date) -> list[dt.date]:
    """Month ends from the first month with history to the last before today, then today."""
    dates = []
    month = dt.date(history_start.year, history_start.month, 1)
    while True:
        nxt = (pd.Timestamp(month) + pd.DateOffset(months=1)).date()
        end = nxt - dt.timedelta(days=1)
        if end >= today:
            break
        dates.append(end)
        month = nxt
    return [*dates, today]


def training_dates(history_start: dt.date, today: dt.date) -> list[dt.date]:
    """The last TRAINING_MONTHS month ends whose 90 days have passed by today."""
    ends = [d for d in scoring_dates(history_start, today)[:-1] if d + dt.timedelta(days=LABEL_DAYS) <= today]
    return ends[-TRAINING_MONTHS:]


class NotEnoughHistory(ValueError):
    """Too few churns, or scoring dates, to learn from."""


@dataclass
class TrainedModel:
    estimator: HistGradientBoostingClassifier
    features: list[str]
    reference: dict[str, float]  # each feature's training median: the "ordinary customer"
    trained_on: list[dt.date]
    rows: int
    churns: int
    seed: int
    params: dict = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        pickle.dump(self, buffer)
        return buffer.getvalue()

    @staticmethod
    def from_bytes(data: bytes) -> TrainedModel:
        return pickle.loads(data)


# one OpenMP thread: on a machine shared with the database (or other jobs) more threads than free cores
# made fitting 100x slower; one thread is predictable and reproducible
THREADS = 1

MODEL_PARAMS = {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 20}


MISSING = -1e9  # an unknown value (no card, no seats, no MRR 90 days ago) sorts below every known one


def matrix(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    return np.nan_to_num(frame[features].to_numpy(dtype=float), nan=MISSING)


def labelled(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["churned_within_90_days"].notna()]


def train(frame: pd.DataFrame, seed: int = 16) -> TrainedModel:
    """Fit on the labelled rows of `frame`. Raises NotEnoughHistory below MIN_CHURNS churns or
    MIN_SCORING_DATES scoring dates."""
    if not len(frame):
        raise NotEnoughHistory("no complete month of history")
    rows = labelled(frame)
    y = rows["churned_within_90_days"].astype(bool).to_numpy()
    dates = sorted(rows["scoring_date"].unique())
    if len(dates) < MIN_SCORING_DATES or y.sum() < MIN_CHURNS or y.all():
        raise NotEnoughHistory(
            f"{int(y.sum())} churns within {LABEL_DAYS} days over {len(dates)} scoring dates "
            f"(at least {MIN_CHURNS} churns over {MIN_SCORING_DATES} dates are needed)"
        )
    if len(rows) > MAX_TRAINING_ROWS:
        rows = rows.sample(MAX_TRAINING_ROWS, random_state=seed)
        y = rows["churned_within_90_days"].astype(bool).to_numpy()
    estimator = HistGradientBoostingClassifier(random_state=seed, **MODEL_PARAMS)
    with threadpool_limits(THREADS):
        estimator.fit(matrix(rows, FEATURE_NAMES), y)
    reference = {name: float(rows[name].median()) if rows[name].notna().any() else np.nan for name in FEATURE_NAMES}
    return TrainedModel(
        estimator=estimator,
        features=list(FEATURE_NAMES),
        reference=reference,
        trained_on=dates,
        rows=len(rows),
        churns=int(y.sum()),
        seed=seed,
        params=dict(MODEL_PARAMS),
    )


def predict(model: TrainedModel, frame: pd.DataFrame) -> np.ndarray:
    if not len(frame):
        return np.zeros(0)
    with threadpool_limits(THREADS):
        return model.estimator.predict_proba(matrix(frame, model.features))[:, 1]


def risk_band(probability: np.ndarray) -> np.ndarray:
    return np.where(probability >= HIGH_RISK, "high", np.where(probability >= MEDIUM_RISK, "medium", "low"))


def top_reasons(model: TrainedModel, frame: pd.DataFrame, probability: np.ndarray, top: int = 3) -> list[list[str]]:
    """Per row, the (up to) `top` features whose value raises this customer's risk most: how much the
    probability falls when that one feature is set to the training median, largest first; only
    features that raise it."""
    if not len(frame):
        return []
    x = matrix(frame, model.features)
    lifts = np.zeros_like(x)
    with threadpool_limits(THREADS):
        for j, name in enumerate(model.features):
            median = MISSING if np.isnan(model.reference[name]) else model.reference[name]
            # a row already at the median scores the same with it: its lift is 0, no need to predict it
            # (most customers sit at the median of most features: a fraction of the predictions)
            rows = np.flatnonzero(x[:, j] != median)
            if not len(rows):
                continue
            changed = x[rows]
            changed[:, j] = median
            lifts[rows, j] = probability[rows] - model.estimator.predict_proba(changed)[:, 1]
    order = np.argsort(-lifts, axis=1)[:, :top]
    names = np.array(model.features, dtype=object)[order]
    names[np.take_along_axis(lifts, order, axis=1) <= 1e-6] = None  # a feature that does not raise it
    return [[name for name in row if name is not None] for row in names.tolist()]


def measures(y: np.ndarray, score: np.ndarray, thresholds: dict[str, float]) -> dict:
    """ROC AUC of `score` for `y`, and precision and recall of `score >= threshold` for each threshold."""
    out: dict = {"rows": int(len(y)), "churns": int(np.sum(y))}
    out["roc_auc"] = float(roc_auc_score(y, score)) if 0 < np.sum(y) < len(y) else None
    for name, threshold in thresholds.items():
        flagged = score >= threshold
        true_positives = int(np.sum(flagged & y))
        out[f"precision_{name}"] = true_positives / int(np.sum(flagged)) if np.sum(flagged) else None
        out[f"recall_{name}"] = true_positives / int(np.sum(y)) if np.sum(y) else None
    return out


def backtest(frame: pd.DataFrame, seed: int = 16) -> dict:
    """Time split: evaluate at the last labelled scoring date T, training only on rows whose label was
    known at T (scoring date + 90 days <= T). The rules' score is the number of churn_risk flags at T."""
    rows = labelled(frame)
    dates = sorted(rows["scoring_date"].unique())
    if not dates:
        raise NotEnoughHistory("no scoring date has 90 days of outcome yet")
    evaluated_at = dates[-1]
    train_rows = rows[rows["scoring_date"] <= evaluated_at - dt.timedelta(days=LABEL_DAYS)]
    model = train(train_rows, seed)
    test = rows[rows["scoring_date"] == evaluated_at]
    y = test["churned_within_90_days"].astype(bool).to_numpy()
    model_scores = predict(model, test)
    rule_flags = test[RULE_COLUMNS].astype(bool).sum(axis=1).to_numpy()
    return {
        "evaluated_at": evaluated_at,
        "train_from": min(train_rows["scoring_date"]),
        "train_to": max(train_rows["scoring_date"]),
        "train_rows": model.rows,
        "train_churns": model.churns,
        "model": measures(y, model_scores, {"high": HIGH_RISK, "medium": MEDIUM_RISK}),
        # a customer the rules flag at all is the rules' "at risk"; two or more flags their "high"
        "rules": measures(y, rule_flags, {"high": 2, "medium": 1}),
    }
