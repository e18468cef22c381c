"""The churn model (METRICS.md "Churn prediction") on hand-made histories whose outcome is known."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from saas_metrics.analytics import churn_model as cm

MONTH_ENDS = [dt.date(2026, 1, 31), dt.date(2026, 2, 28), dt.date(2026, 3, 31), dt.date(2026, 4, 30)]
MONTH_ENDS += [dt.date(2026, 5, 31), dt.date(2026, 6, 30), dt.date(2026, 7, 31)]


def history(customers: int = 100, churn_share: float = 0.2, separable: bool = True, seed: int = 0) -> pd.DataFrame:
    """`customers` paying customers at each month end; a fifth churn within 90 days. Separable: every
    churner has no events and no key actions in the last 4 weeks, every other customer plenty;
    otherwise the same usage is drawn for both and nothing tells them apart."""
    rng = np.random.default_rng(seed)
    rows = []
    for date in MONTH_ENDS:
        for i in range(customers):
            churned = rng.random() < churn_share
            quiet = churned if separable else rng.random() < churn_share
            row = {name: float(rng.integers(1, 50)) for name in cm.FEATURE_NAMES}
            row.update(
                customer_id=f"cus_{date:%m}_{i}",
                scoring_date=date,
                events_4w=0.0 if quiet else 100.0 + rng.integers(0, 100),
                key_actions_4w=0.0 if quiet else 10.0 + rng.integers(0, 10),
                churned_within_90_days=churned,
                is_usage_drop=bool(rng.random() < 0.2),
                is_no_recent_key_action=bool(rng.random() < 0.2),
                is_admin_inactive=bool(rng.random() < 0.2),
                is_card_expiring=False,
            )
            rows.append(row)
    return pd.DataFrame(rows)


def test_perfectly_separable_history_gives_auc_1():
    # evaluated at the last month end (July); trained on the months whose 90 days had passed by then
    # (January .. April 30 = July 31 - 92 days), never on July itself
    result = cm.backtest(history())
    assert result["evaluated_at"] == dt.date(2026, 7, 31)
    assert (result["train_from"], result["train_to"]) == (dt.date(2026, 1, 31), dt.date(2026, 4, 30))
    assert result["train_rows"] == 400
    assert result["model"]["roc_auc"] == 1.0
    assert result["model"]["recall_high"] == 1.0 and result["model"]["precision_high"] == 1.0
    # the rules' flags here are coin flips: about 0.5
    assert 0.3 < result["rules"]["roc_auc"] < 0.7


def test_history_with_no_signal_gives_auc_near_one_half():
    result = cm.backtest(history(separable=False, customers=400))
    assert 0.35 < result["model"]["roc_auc"] < 0.65


def test_top_reasons_name_what_raises_the_risk():
    frame = history()
    model = cm.train(frame)
    churner = frame[(frame["scoring_date"] == MONTH_ENDS[-1]) & frame["churned_within_90_days"]].head(5)
    probability = cm.predict(model, churner)
    assert (probability > 0.9).all()
    assert (cm.risk_band(probability) == "high").all()
    for reasons in cm.top_reasons(model, churner, probability):
        assert reasons[0] in {"events_4w", "key_actions_4w"}
        assert len(reasons) <= 3


def test_training_is_deterministic_given_a_seed():
    frame = history(separable=False)
    first = cm.predict(cm.train(frame, seed=3), frame)
    again = cm.predict(cm.train(frame, seed=3), frame)
    np.testing.assert_array_equal(first, again)
    stored = cm.TrainedModel.from_bytes(cm.train(frame, seed=3).to_bytes())
    np.testing.assert_array_equal(cm.predict(stored, frame), first)


def test_too_little_history_is_a_clear_message():
    few = history(customers=10, churn_share=0.1)
    with pytest.raises(cm.NotEnoughHistory, match=r"churns within 90 days over .* scoring dates \(at least 20"):
        cm.train(few)
    with pytest.raises(cm.NotEnoughHistory, match="no complete month of history"):
        cm.train(pd.DataFrame())
    one_date = history()
    one_date = one_date[one_date["scoring_date"] == MONTH_ENDS[0]]
    with pytest.raises(cm.NotEnoughHistory, match="over 1 scoring dates"):
        cm.train(one_date)


def test_unlabelled_rows_are_not_learned_from():
    # the last 90 days have no outcome yet (None): they are scored, never trained on
    frame = history()
    frame["churned_within_90_days"] = frame["churned_within_90_days"].astype(object)
    frame.loc[frame["scoring_date"] == MONTH_ENDS[-1], "churned_within_90_days"] = None
    model = cm.train(frame)
    assert model.trained_on == MONTH_ENDS[:-1]
    assert model.rows == 600


def test_measures_by_hand():
    # positives score 0.9 and 0.3, negatives 0.8 and 0.1: of the 4 pairs, 3 rank the positive higher
    # -> AUC 0.75; at 0.5, flagged 0.9 and 0.8: precision 1/2, recall 1/2
    y = np.array([True, False, True, False])
    score = np.array([0.9, 0.8, 0.3, 0.1])
    out = cm.measures(y, score, {"high": 0.5})
    assert out["roc_auc"] == 0.75
    assert (out["precision_high"], out["recall_high"]) == (0.5, 0.5)
    assert cm.measures(np.array([False, False]), np.array([0.1, 0.2]), {})["roc_auc"] is None


def test_scoring_dates_are_month_ends_then_today():
    dates = cm.scoring_dates(dt.date(2026, 1, 10), dt.date(2026, 4, 30))
    assert dates == [dt.date(2026, 1, 31), dt.date(2026, 2, 28), dt.date(2026, 3, 31), dt.date(2026, 4, 30)]
    assert cm.scoring_dates(dt.date(2026, 4, 1), dt.date(2026, 4, 15)) == [dt.date(2026, 4, 15)]


def test_training_dates_are_the_last_twelve_month_ends_with_an_outcome():
    # today 2026-07-15: May 31 + 90 days = Aug 29 is after today; Apr 30 + 90 = Jul 29 too; Mar 31 + 90
    # = Jun 29 is before: the last 12 from Apr 2025 .. Mar 2026
    dates = cm.training_dates(dt.date(2024, 1, 1), dt.date(2026, 7, 15))
    assert (dates[0], dates[-1], len(dates)) == (dt.date(2025, 4, 30), dt.date(2026, 3, 31), 12)


def test_risk_bands():
    assert list(cm.risk_band(np.array([0.05, 0.1, 0.29, 0.3]))) == ["low", "medium", "medium", "high"]


# --- the feature SQL and the asset, on a hand-made warehouse ------------------------------------

WAREHOUSE_DDL = """
create schema marts; create schema staging; create schema intermediate;
create table marts.customer_mrr_monthly (customer_id text, month date, snapshot_date date, mrr numeric);
create table marts.customer_mrr_current (customer_id text, mrr numeric, is_paying boolean);
create table marts.mrr_movements (customer_id text, movement_date date, movement_type text);
create table marts.account_engagement_weekly (
    account_id text, customer_id text, week_start date, events bigint, key_actions bigint,
    active_users bigint, seats bigint, health_score integer
);
create table marts.churn_risk (customer_id text);
create table staging.stg_stripe__invoices (
    invoice_id text, customer_id text, status text, subtotal_cents bigint, total_cents bigint,
    amount_due_cents bigint, tax_cents bigint, created_at timestamptz, paid_at timestamptz,
    voided_at timestamptz
);
create table staging.stg_stripe__subscriptions (
    subscription_id text, customer_id text, started_at timestamptz, ended_at timestamptz
);
create table staging.stg_stripe__subscription_items (subscription_id text, billing_account text, price_id text);
create table staging.stg_stripe__prices (price_id text, billing_account text, recurring_interval text);
create table staging.stg_stripe__customers (customer_id text, default_card_expires_on date);
create table intermediate.int_product_accounts (account_id text, customer_id text);
create table intermediate.int_product_user_days (
    account_id text, user_id text, activity_date date, has_admin_event boolean
);
"""

# A pays 100 from 2026-01-05 and churns 2026-03-20; its card expires 2026-02-28; an invoice of
# 2026-02-05 is paid only on 2026-03-01. B pays 50 (yearly price) from 2025-12-10, expands to 80 on
# 2026-02-10 and still pays today, 2026-07-15; its product account is active in January.
WAREHOUSE_ROWS = """
insert into marts.customer_mrr_monthly values
    ('A', '2026-01-01', '2026-01-31', 100), ('A', '2026-02-01', '2026-02-28', 100),
    ('A', '2026-03-01', '2026-03-31', 0),
    ('B', '2025-12-01', '2025-12-31', 50), ('B', '2026-01-01', '2026-01-31', 50),
    ('B', '2026-02-01', '2026-02-28', 80), ('B', '2026-03-01', '2026-03-31', 80),
    ('B', '2026-04-01', '2026-04-30', 80), ('B', '2026-05-01', '2026-05-31', 80),
    ('B', '2026-06-01', '2026-06-30', 80), ('B', '2026-07-01', '2026-07-15', 80);
insert into marts.customer_mrr_current values ('A', 0, false), ('B', 80, true);
insert into marts.mrr_movements values
    ('A', '2026-01-05', 'new'), ('A', '2026-03-20', 'churn'),
    ('B', '2025-12-10', 'new'), ('B', '2026-02-10', 'expansion');
insert into marts.account_engagement_weekly values
    ('acc_b', 'B', '2025-12-01', 3, 0, 1, 3, 40), ('acc_b', 'B', '2025-12-22', 4, 0, 1, 3, 40),
    ('acc_b', 'B', '2025-12-29', 5, 1, 1, 3, 50), ('acc_b', 'B', '2026-01-12', 20, 3, 2, 4, 70),
    ('acc_b', 'B', '2026-01-19', 10, 2, 3, 4, 60);
insert into staging.stg_stripe__invoices values
    ('in_1', 'A', 'paid', 10000, 10000, 10000, 0, '2026-01-05', '2026-01-05', null),
    ('in_2', 'A', 'paid', 10000, 10000, 10000, 0, '2026-02-05', '2026-03-01', null),
    ('in_3', 'B', 'paid', 60000, 50000, 50000, 0, '2025-12-10', '2025-12-10', null);
insert into staging.stg_stripe__subscriptions values
    ('sub_a', 'A', '2026-01-05', '2026-03-20'), ('sub_b', 'B', '2025-12-10', null);
insert into staging.stg_stripe__subscription_items values
    ('sub_a', 'default', 'price_m'), ('sub_b', 'default', 'price_y');
insert into staging.stg_stripe__prices values ('price_m', 'default', 'month'), ('price_y', 'default', 'year');
insert into staging.stg_stripe__customers values ('A', '2026-02-28'), ('B', null);
insert into intermediate.int_product_accounts values ('acc_b', 'B');
insert into intermediate.int_product_user_days values
    ('acc_b', 'u1', '2026-01-20', true), ('acc_b', 'u2', '2026-01-21', false);
"""


@pytest.fixture
def warehouse(fresh_database, monkeypatch):
    import psycopg2

    url = fresh_database("churn")
    monkeypatch.setenv("DATABASE_URL", url)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(WAREHOUSE_DDL)
        cur.execute(WAREHOUSE_ROWS)
    return url


def test_features_are_what_was_known_at_the_scoring_date(warehouse):
    import psycopg2

    today = dt.date(2026, 7, 15)
    dates = [dt.date(2026, 1, 31), dt.date(2026, 2, 28), dt.date(2026, 3, 31), dt.date(2026, 5, 31), today]
    with psycopg2.connect(warehouse) as conn:
        frame = cm.read_features(conn, dates, today)
    rows = {(r.customer_id, r.scoring_date): r for r in frame.itertuples()}
    # A pays at January's and February's ends only (March ends at 0); B at every date
    assert sorted(rows) == sorted([("A", dates[0]), ("A", dates[1])] + [("B", d) for d in dates])
    a_jan, a_feb, b_jan = rows[("A", dates[0])], rows[("A", dates[1])], rows[("B", dates[0])]
    # labels: A churned 2026-03-20, within 90 days of Jan 31 and of Feb 28; B never; May 31 + 90 days
    # is after today: no label yet, and today's row neither
    assert a_jan.churned_within_90_days is True and a_feb.churned_within_90_days is True
    assert b_jan.churned_within_90_days is False
    assert rows[("B", dates[3])].churned_within_90_days is None and rows[("B", today)].churned_within_90_days is None
    # tenure: Jan 31 - Jan 5 = 26 days; Jan 31 - Dec 10 = 52 days
    assert (a_jan.tenure_days, b_jan.tenure_days) == (26, 52)
    # B's MRR change over 90 days: at Mar 31 vs Dec 31 (50 -> 80) = +0.6; at Feb 28, 90 days before is
    # Nov 30, when B did not pay: unknown
    assert rows[("B", dates[2])].mrr_change_90d == pytest.approx(0.6)
    assert np.isnan(rows[("B", dates[1])].mrr_change_90d)
    assert rows[("B", dates[1])].expansions_180d == 1 and b_jan.expansions_180d == 0
    # A's invoice of Feb 5 was unpaid at Feb 28 (paid Mar 1); nothing unpaid at Jan 31
    assert (a_jan.unpaid_invoices_90d, a_feb.unpaid_invoices_90d) == (0, 1)
    # A's card expires Feb 28: 28 days after Jan 31, within 30 -> the card rule flags it
    assert a_jan.days_to_card_expiry == 28 and a_jan.is_card_expiring
    assert np.isnan(b_jan.days_to_card_expiry) and not b_jan.is_card_expiring
    # B: yearly price, discounted last invoice (subtotal 600 > total 500); A neither
    assert (b_jan.is_annual, b_jan.has_discount, a_jan.is_annual, a_jan.has_discount) == (1, 1, 0, 0)
    # Jan 31 is a Saturday: the last complete week is Jan 19-25. Last 4 weeks (Dec 29 .. Jan 19):
    # 5 + 20 + 10 = 35 events, 1 + 3 + 2 = 6 key actions; the 4 before (Dec 1 .. Dec 22): 3 + 4 = 7
    assert (b_jan.events_4w, b_jan.key_actions_4w) == (35, 6)
    assert b_jan.activity_trend == pytest.approx(np.log(36 / 8))
    # last week: 3 active users of 4 seats, health 60; one admin day (Jan 20) in the last 2 weeks
    assert (b_jan.active_users_last_week, b_jan.seat_use, b_jan.health_score) == (3, 0.75, 60)
    assert b_jan.admin_days_2w == 1 and not b_jan.is_admin_inactive
    # rules then: last week 10 events <= half of the week before's 20 -> usage drop; key actions in
    # the last 2 weeks (5) -> not quiet
    assert b_jan.is_usage_drop and not b_jan.is_no_recent_key_action
    # A has no product account: no activity, quiet, admin inactive
    assert a_jan.events_4w == 0 and a_jan.is_no_recent_key_action and a_jan.is_admin_inactive
    # today: B from customer_mrr_current
    assert rows[("B", today)].mrr == 80


def test_asset_with_too_little_history_skips_and_leaves_predictions_empty(warehouse):
    import dagster as dg

    from orchestration.defs.churn import churn_model
    from orchestration.defs.resources import WarehouseResource
    from tests.conftest import query

    result = dg.materialize([churn_model], resources={"warehouse": WarehouseResource()})
    assert result.success
    metadata = {
        event.asset_key.path[-1]: {k: v.value for k, v in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
    }
    # scoring dates from Jan 31 (8 weeks after the first product week, Dec 1: Jan 26) to June 30;
    # labelled: Jan 31, Feb 28, Mar 31 (Apr 30 + 90 days = Jul 29 is after today); A's churn counts
    # at Jan 31 and at Feb 28: 2 churns
    assert metadata["churn_predictions"]["skipped"] == (
        "churn model not trained (no model yet): 2 churns within 90 days over 3 scoring dates "
        "(at least 20 churns over 2 dates are needed)"
    )
    assert query(warehouse, "select count(*) from marts.churn_predictions") == [(0,)]
    assert query(warehouse, "select count(*) from marts.churn_model_evaluations") == [(0,)]
    assert query(warehouse, "select count(*) from ops.churn_models") == [(0,)]


def test_asset_trains_stores_and_says_which_model_scored(warehouse, monkeypatch):
    import dagster as dg

    from orchestration.defs.churn import churn_model
    from orchestration.defs.resources import WarehouseResource
    from tests.conftest import query

    # the hand-made warehouse has 2 churns: let the asset learn from that little
    monkeypatch.setattr(cm, "MIN_CHURNS", 1)
    result = dg.materialize([churn_model], resources={"warehouse": WarehouseResource()})
    assert result.success
    assert query(warehouse, "select model_id, training_rows, training_churns, seed from ops.churn_models") == [
        (1, 5, 2, 16)
    ]
    rows = query(
        warehouse, "select customer_id, scoring_date::text, mrr_at_risk, model_id from marts.churn_predictions"
    )
    assert rows == [("B", "2026-07-15", 80, 1)]
    # tonight is not the 1st and a model exists: scoring only, by the same model
    assert dg.materialize([churn_model], resources={"warehouse": WarehouseResource()}).success
    assert query(warehouse, "select count(*) from ops.churn_models") == [(1,)]
    assert query(warehouse, "select model_id from marts.churn_predictions") == [(1,)]


def test_top_reasons_predict_only_rows_away_from_the_median_and_match_predicting_every_row():
    # most customers sit at the median of most features: top_reasons predicts only the others; the
    # reasons must be exactly those of setting each feature to the median for every row
    frame = history(customers=200, separable=False)
    rng = np.random.default_rng(1)
    for name in cm.FEATURE_NAMES[:6]:
        frame.loc[rng.random(len(frame)) < 0.6, name] = frame[name].median()
    frame.loc[rng.random(len(frame)) < 0.3, cm.FEATURE_NAMES[7]] = np.nan
    model = cm.train(frame)
    probability = cm.predict(model, frame)
    x = cm.matrix(frame, model.features)
    lifts = np.zeros_like(x)
    for j, name in enumerate(model.features):
        changed = x.copy()
        changed[:, j] = cm.MISSING if np.isnan(model.reference[name]) else model.reference[name]
        lifts[:, j] = probability - model.estimator.predict_proba(changed)[:, 1]
    order = np.argsort(-lifts, axis=1)[:, :3]
    expected = [[model.features[j] for j in row if lifts[i, j] > 1e-6] for i, row in enumerate(order)]
    assert cm.top_reasons(model, frame, probability) == expected
    # a feature at its median is never a reason
    at_median = frame[cm.FEATURE_NAMES[0]] == model.reference[cm.FEATURE_NAMES[0]]
    assert at_median.sum() > 100
    reasons = cm.top_reasons(model, frame, probability)
    assert not any(cm.FEATURE_NAMES[0] in reasons[i] for i in np.flatnonzero(at_median.to_numpy()))


@pytest.mark.parametrize("discounted_first", [True, False])
def test_the_last_invoice_discount_does_not_depend_on_row_order(warehouse, discounted_first):
    """Two invoices of A at the same second (an upgrade's proration invoice and the renewal): "its last invoice
    carried a discount" holds when either did, whichever order the rows are stored in (a demo warehouse
    and its rebuild disagreed on one customer)."""
    import psycopg2

    plain = "('in_2p', 'A', 'paid', 5000, 5000, 5000, 0, '2026-02-20', '2026-02-20', null)"
    discounted = "('in_2d', 'A', 'paid', 5000, 4000, 4000, 0, '2026-02-20', '2026-02-20', null)"
    first, second = (discounted, plain) if discounted_first else (plain, discounted)
    with psycopg2.connect(warehouse) as conn, conn.cursor() as cur:
        cur.execute(f"insert into staging.stg_stripe__invoices values {first}")
        cur.execute(f"insert into staging.stg_stripe__invoices values {second}")
    with psycopg2.connect(warehouse) as conn:
        frame = cm.read_features(conn, [dt.date(2026, 2, 28)], dt.date(2026, 7, 15))
    (a_feb,) = frame[frame["customer_id"] == "A"].itertuples()
    assert a_feb.has_discount == 1
