"""The churn model (METRICS.md "Churn prediction") on hand-made histories whose outcome is known."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from saas_metrics import churn_model as cm

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


def test_risk_bands():
    assert list(cm.risk_band(np.array([0.05, 0.1, 0.29, 0.3]))) == ["low", "medium", "medium", "high"]
