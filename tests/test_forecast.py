"""The MRR forecast (METRICS.md "MRR forecast") on hand-made histories whose outcome is known."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import psycopg2
import pytest

from saas_metrics import forecast as fc
from tests.conftest import query


def compound_history(months: int = 24, start_mrr: float = 10_000.0) -> pd.DataFrame:
    """Every month: new 4% of starting MRR, expansion 1%, contraction 0.5%, churn 1.5%, no
    reactivation: MRR grows 3% a month; customers start at 100 and grow 3% a month too."""
    rows = []
    mrr, customers = start_mrr, 100.0
    for i in range(months):
        new, expansion, contraction, churned = 0.04 * mrr, 0.01 * mrr, 0.005 * mrr, 0.015 * mrr
        new_customers, churned_customers = 0.045 * customers, 0.015 * customers
        ending = mrr + new + expansion - contraction - churned
        ending_customers = customers + new_customers - churned_customers
        rows.append(
            {
                "month": pd.Timestamp(2024, 1, 1) + pd.DateOffset(months=i),
                "starting_mrr": mrr,
                "new_mrr": new,
                "expansion_mrr": expansion,
                "reactivation_mrr": 0.0,
                "contraction_mrr": contraction,
                "churned_mrr": churned,
                "ending_mrr": ending,
                "starting_customers": customers,
                "new_customers": new_customers,
                "reactivated_customers": 0.0,
                "churned_customers": churned_customers,
                "ending_customers": ending_customers,
            }
        )
        mrr, customers = ending, ending_customers
    return pd.DataFrame(rows)


def test_constant_growth_is_forecast_within_one_percent():
    # 10,000 growing 3% a month: the 24th month ends at 10,000 x 1.03^24 = 20,327.94; twelve months
    # later 10,000 x 1.03^36 = 28,982.78, and the first forecast month 10,000 x 1.03^25 = 20,937.78
    frame = fc.forecast(compound_history())
    assert list(frame["month"].dt.strftime("%Y-%m"))[:2] == ["2026-01", "2026-02"]
    assert frame["expected_mrr"].iloc[0] == pytest.approx(20_937.78, rel=0.01)
    assert frame["expected_mrr"].iloc[-1] == pytest.approx(28_982.78, rel=0.01)
    assert frame["expected_arr"].iloc[-1] == pytest.approx(12 * 28_982.78, rel=0.01)
    # customers: 100 x 1.03^36 = 289.83
    assert frame["expected_paying_customers"].iloc[-1] == pytest.approx(289.83, rel=0.01)
    # movements of month 36: new 4% of its starting MRR 10,000 x 1.03^35 = 28,138.62 -> 1,125.54; churn 1.5% -> 422.08
    assert frame["expected_new_mrr"].iloc[-1] == pytest.approx(1_125.54, rel=0.01)
    assert frame["expected_churned_mrr"].iloc[-1] == pytest.approx(422.08, rel=0.01)
    # no noise in the history, so (almost) no width in the intervals
    assert frame["mrr_upper_95"].iloc[-1] - frame["mrr_lower_95"].iloc[-1] < 0.0001 * 28_982.78


def test_linear_growth_without_churn():
    # new 1,000 every month, nothing else: MRR 24,000 after 24 months, 36,000 twelve months later
    history = compound_history()
    history[["expansion_mrr", "contraction_mrr", "churned_mrr"]] = 0.0
    history["new_mrr"] = 1_000.0
    history["ending_mrr"] = 1_000.0 * np.arange(1, 25)
    history["starting_mrr"] = history["ending_mrr"] - 1_000.0
    frame = fc.forecast(history)
    assert frame["expected_mrr"].iloc[-1] == pytest.approx(36_000, rel=0.001)
    assert frame["expected_new_mrr"].tolist() == pytest.approx([1_000] * 12, rel=0.001)


def test_scheduled_cancellations_are_a_floor_on_churn():
    # month 25 would churn 1.5% of 20,327.94 = 304.92; 5,000 is scheduled to end then, so 5,000 churns
    scheduled = pd.DataFrame({"month": [pd.Timestamp(2026, 1, 1)], "mrr": [5_000.0], "customers": [3]})
    frame = fc.forecast(compound_history(), scheduled)
    assert frame["expected_churned_mrr"].iloc[0] == pytest.approx(5_000, rel=1e-6)
    assert frame["scheduled_churn_mrr"].iloc[0] == 5_000
    # 20,327.94 + 4% + 1% - 0.5% of it - 5,000 = 16,242.72
    assert frame["expected_mrr"].iloc[0] == pytest.approx(16_242.72, rel=0.001)
    # a small scheduled amount changes nothing: the rate is more
    small = scheduled.assign(mrr=100.0)
    assert fc.forecast(compound_history(), small)["expected_churned_mrr"].iloc[0] == pytest.approx(304.92, rel=0.01)


def noisy_history(months: int = 48, seed: int = 1) -> pd.DataFrame:
    """A business whose movements are drawn around known rates: new 2,000 +- 30%, expansion 1%,
    contraction 0.5%, churn 2.5% +- noise."""
    rng = np.random.default_rng(seed)
    history = compound_history(months)
    mrr = 10_000.0
    for i in range(months):
        new = 2_000 * rng.lognormal(0, 0.3)
        churned = mrr * max(0.0, rng.normal(0.025, 0.008))
        expansion, contraction = mrr * 0.01 * rng.lognormal(0, 0.3), mrr * 0.005 * rng.lognormal(0, 0.3)
        ending = mrr + new + expansion - contraction - churned
        history.loc[i, ["starting_mrr", "new_mrr", "expansion_mrr", "contraction_mrr", "churned_mrr", "ending_mrr"]] = [
            mrr,
            new,
            expansion,
            contraction,
            churned,
            ending,
        ]
        mrr = ending
    return history


def test_intervals_are_ordered_and_deterministic():
    history = noisy_history()
    first = fc.forecast(history, settings=fc.ForecastSettings(seed=7))
    again = fc.forecast(history, settings=fc.ForecastSettings(seed=7))
    pd.testing.assert_frame_equal(first, again)
    assert (first["mrr_lower_95"] <= first["mrr_lower_80"]).all()
    assert (first["mrr_lower_80"] <= first["expected_mrr"]).all()
    assert (first["expected_mrr"] <= first["mrr_upper_80"]).all()
    assert (first["mrr_upper_80"] <= first["mrr_upper_95"]).all()
    # uncertainty grows with the horizon
    width = first["mrr_upper_80"] - first["mrr_lower_80"]
    assert width.is_monotonic_increasing
    other = fc.forecast(history, settings=fc.ForecastSettings(seed=8))
    assert not np.allclose(first["mrr_upper_80"], other["mrr_upper_80"])


def test_backtest_of_a_known_process_is_calibrated_and_beats_the_baselines():
    # the process above levels off towards 2,000 / (2.5% - 0.5%) = 100,000: last value lags, a straight
    # line overshoots; the model, knowing the rates, does better; and its 80% interval covers ~80%
    history = noisy_history(60)
    rows = fc.backtest(history)
    summary = fc.backtest_summary(rows)
    assert summary["origins"] == 60 - 12
    assert set(rows["method"]) == {"model", "last_value", "linear_trend"}
    assert summary["beats_baselines_h3"] and summary["beats_baselines_h12"]
    assert 0.7 <= summary["coverage_80"] <= 0.9
    assert summary["coverage_95"] >= 0.85


def test_backtest_rows_and_baselines_by_hand():
    # MRR 100, 110, ..., 230 over 14 months (new 10 a month): origin 12 (MRR 210) is the only origin
    # with 12 months of history and a month after it; horizon 1 actual 220
    history = compound_history(14)
    history[["expansion_mrr", "contraction_mrr", "churned_mrr"]] = 0.0
    history["new_mrr"] = 10.0
    history["ending_mrr"] = 100.0 + 10.0 * np.arange(14)
    history["starting_mrr"] = history["ending_mrr"] - 10.0
    rows = fc.backtest(history)
    origins = sorted(rows["origin_month"].dt.strftime("%Y-%m").unique())
    assert origins == ["2024-12", "2025-01"]
    first = rows[rows["origin_month"] == pd.Timestamp(2024, 12, 1)].set_index(["method", "horizon"])
    assert list(first.index.get_level_values("horizon").unique()) == [1]
    assert first.loc[("last_value", 1), "forecast_mrr"] == 210
    assert first.loc[("linear_trend", 1), "forecast_mrr"] == pytest.approx(220)  # the last 6: 160..210, +10 a month
    assert first.loc[("last_value", 1), "absolute_percentage_error"] == pytest.approx(10 / 220)
    assert first.loc[("model", 1), "forecast_mrr"] == pytest.approx(220, rel=1e-6)
    assert bool(first.loc[("model", 1), "is_covered_80"])
    assert pd.isna(first.loc[("last_value", 1), "is_covered_80"])


def test_too_little_history():
    with pytest.raises(fc.NotEnoughHistory, match="at least 6 complete months"):
        fc.forecast(compound_history(4))
    assert fc.backtest(compound_history(10)).empty
    assert fc.backtest_summary(fc.backtest(compound_history(10))) == {"origins": 0}


MRR_MONTHLY_DDL = """
create schema marts;
create table marts.mrr_monthly (
    month date, starting_mrr numeric, new_mrr numeric, expansion_mrr numeric, reactivation_mrr numeric,
    contraction_mrr numeric, churned_mrr numeric, ending_mrr numeric, starting_customers bigint,
    new_customers bigint, reactivated_customers bigint, churned_customers bigint, ending_customers bigint,
    fx_impact numeric
);
create table marts.customer_mrr_current (
    customer_id text, mrr numeric, pending_churn_mrr numeric, has_scheduled_cancellation boolean,
    scheduled_cancel_at timestamptz
);
"""


def test_asset_writes_both_marts_with_backtest_metadata(fresh_database, monkeypatch):
    from orchestration.defs.ml import mrr_forecast
    from orchestration.defs.resources import WarehouseResource
    from saas_metrics.warehouse import create_bi_role

    url = fresh_database("forecast")
    monkeypatch.setenv("DATABASE_URL", url)
    history = noisy_history(30)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(MRR_MONTHLY_DDL)
        for row in history.itertuples():
            cur.execute(
                "insert into marts.mrr_monthly values (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,0)",
                (
                    row.month.date(),
                    row.starting_mrr,
                    row.new_mrr,
                    row.expansion_mrr,
                    0,
                    row.contraction_mrr,
                    row.churned_mrr,
                    row.ending_mrr,
                    100,
                    5,
                    0,
                    2,
                    103,
                ),
            )
        # the month in progress (excluded from the history) and one scheduled cancellation
        cur.execute("insert into marts.mrr_monthly (month, ending_mrr) values ('2026-07-01', 1)")
        cur.execute(
            "insert into marts.customer_mrr_current values ('cus_1', 300, 300, true, '2026-08-15'), "
            "('cus_2', 50, 0, false, null)"
        )
    bi_url = create_bi_role(url, "forecast_reader")

    result = dg.materialize([mrr_forecast], resources={"warehouse": WarehouseResource()})
    assert result.success
    metadata = {
        event.asset_key.path[-1]: {k: v.value for k, v in event.materialization.metadata.items()}
        for event in result.get_asset_materialization_events()
    }
    assert metadata["mrr_forecast_backtest"]["origins"] == 30 - 12
    for key in ("mape_model_h3", "mape_last_value_h12", "mape_linear_trend_h12", "coverage_80", "beats_baselines_h3"):
        assert key in metadata["mrr_forecast"], key
    # the 30 months run 2024-01 .. 2026-06: the forecast starts with July 2026, the month in progress
    rows = query(url, "select month::text, horizon, scheduled_churn_mrr from marts.mrr_forecast order by month")
    assert [r[0] for r in rows] == [str(d.date()) for d in pd.date_range("2026-07-01", periods=12, freq="MS")]
    assert rows[1][2] == 300  # August: the scheduled cancellation
    types = dict(
        query(
            url,
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'marts' and table_name = 'mrr_forecast_backtest'",
        )
    )
    assert types["is_covered_80"] == "boolean" and types["horizon"] == "integer" and types["origin_month"] == "date"
    # a rerun replaces, never appends, and keeps a view someone built on the table; the BI role reads both
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("create view public.forecast_view as select month, expected_mrr from marts.mrr_forecast")
    assert dg.materialize([mrr_forecast], resources={"warehouse": WarehouseResource()}).success
    assert query(url, "select count(*) from public.forecast_view") == [(12,)]
    assert query(url, "select count(*) from marts.mrr_forecast") == [(12,)]
    assert query(bi_url, "select count(*) from marts.mrr_forecast_backtest") == [(len(fc.backtest(history)),)]
