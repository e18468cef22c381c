"""The MRR forecast (METRICS.md "MRR forecast") on hand-made histories whose outcome is known."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import psycopg2
import pytest

from saas_metrics.analytics import forecast as fc
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


def renewal_history(history: pd.DataFrame) -> pd.DataFrame:
    """Every month terms worth 10% of starting MRR (and 10% of customers) end; a tenth of them churn
    (1% of starting MRR: two thirds of the month's 1.5% churn), the rest renew at the same price."""
    return pd.DataFrame(
        {
            "month": history["month"],
            "decided_mrr": 0.10 * history["starting_mrr"],
            "renewed_mrr": 0.09 * history["starting_mrr"],
            "churned_mrr": 0.01 * history["starting_mrr"],
            "renewals_decided": 0.10 * history["starting_customers"],
            "churned": 0.01 * history["starting_customers"],
        }
    )


def test_renewal_calendar_is_judged_at_the_term_end():
    # Monthly rates without the renewal points: churn (1.5% - 1%) / (100% - 10%) = 0.5556% of the MRR
    # not up for renewal, expansion 1% / 90% = 1.1111%, contraction 0.5% / 90% = 0.5556%; renewals
    # churn 10% of the MRR due (1% / 10%), with no net change. January 2026 starts at 20,327.94 with
    # 10,000 due: rest 10,327.94; churn 0.005556 x 10,327.94 + 10% x 10,000 = 57.38 + 1,000 = 1,057.38
    # (pooled rates would say 1.5% x 20,327.94 = 304.92; not removing the renewal churn from the rate,
    # 1.5% x 10,327.94 + 1,000 = 1,154.92); expansion 1.1111% x 10,327.94 = 114.75, contraction 57.38,
    # new 4% x 20,327.94 = 813.12: ending 20,327.94 + 813.12 + 114.75 - 57.38 - 1,057.38 = 20,141.06
    history = compound_history()
    calendar = pd.DataFrame({"month": [pd.Timestamp(2026, 1, 1)], "mrr": [10_000.0], "customers": [40.0]})
    frame = fc.forecast(history, commitments=fc.Commitments(renewal_history(history), calendar))
    first = frame.iloc[0]
    assert first["renewal_due_mrr"] == 10_000
    assert first["expected_churned_mrr"] == pytest.approx(1_057.38, abs=0.01)
    assert first["expected_expansion_mrr"] == pytest.approx(114.75, abs=0.01)
    assert first["expected_contraction_mrr"] == pytest.approx(57.38, abs=0.01)
    assert first["expected_mrr"] == pytest.approx(20_141.06, abs=0.01)
    # customers 100 x 1.03^24 = 203.28: new 4.5% = 9.15; churn 0.5556% x (203.28 - 40) + 10% x 40 = 4.91
    assert first["expected_paying_customers"] == pytest.approx(203.28 + 9.15 - 4.91, abs=0.01)
    # February has nothing due: churn is 0.5556% of its starting MRR (20,141.06 -> 111.89), not 1.5%
    assert frame["expected_churned_mrr"].iloc[1] == pytest.approx(0.005 / 0.9 * 20_141.06, abs=0.01)
    # without any decided term in the window the calendar is ignored: the pooled rates hold the renewals
    none_decided = renewal_history(history).assign(decided_mrr=0.0, renewed_mrr=0.0, churned_mrr=0.0)
    none_decided[["renewals_decided", "churned"]] = 0.0
    plain = fc.forecast(history, commitments=fc.Commitments(none_decided, calendar))
    assert plain["expected_churned_mrr"].iloc[0] == pytest.approx(304.92, abs=0.01)
    assert plain["renewal_due_mrr"].iloc[0] == 0


def test_renewals_at_a_higher_price_are_expansion():
    # the renewed pay 20% more: renewed MRR 0.09 x 1.2 = 0.108 of starting MRR, net change +0.018 of
    # it, i.e. +18% of the MRR due, which comes off the month's expansion (1% - 1.8% < 0: none left
    # for the monthly rate). January: 10,000 due -> churn 1,000 + 57.38, expansion 1,800 + 0
    history = compound_history()
    renewals = renewal_history(history).assign(renewed_mrr=0.108 * history["starting_mrr"])
    calendar = pd.DataFrame({"month": [pd.Timestamp(2026, 1, 1)], "mrr": [10_000.0], "customers": [40.0]})
    first = fc.forecast(history, commitments=fc.Commitments(renewals, calendar)).iloc[0]
    assert first["expected_expansion_mrr"] == pytest.approx(1_800, abs=0.01)
    assert first["expected_churned_mrr"] == pytest.approx(1_057.38, abs=0.01)


def test_trials_in_progress_convert_at_their_rate_as_a_floor_on_new_business():
    # 50 trials worth 5,000 MRR end in February 2026, 40% convert: 2,000 expected new MRR, more than
    # the curve's 4% x 20,937.78 = 837.51, so February's new MRR is 2,000; MRR 20,937.78 x (1 + 1% -
    # 0.5% - 1.5%) + 2,000 = 22,728.40
    history = compound_history()
    trials = pd.DataFrame({"month": [pd.Timestamp(2026, 2, 1)], "mrr": [5_000.0], "customers": [50.0]})
    frame = fc.forecast(history, commitments=fc.Commitments(trials=trials, trial_conversion_rate=0.4))
    assert frame["trial_conversion_mrr"].tolist()[:3] == pytest.approx([0, 2_000, 0])
    assert frame["expected_new_mrr"].iloc[1] == pytest.approx(2_000, abs=0.01)
    assert frame["expected_mrr"].iloc[1] == pytest.approx(22_728.40, abs=0.01)
    # new customers: the curve's 2,000 / (4% / 4.5% per customer x 100 MRR a customer = 88.89) = 22.5
    # beat the 40% x 50 = 20 trials; a few trials (500 MRR x 50% = 250 < 837.51) change nothing, the
    # curve already holds an ordinary month's conversions
    small = trials.assign(mrr=500.0, customers=20.0)
    plain = fc.forecast(history, commitments=fc.Commitments(trials=small, trial_conversion_rate=0.5))
    assert plain["expected_new_mrr"].iloc[1] == pytest.approx(0.04 * 20_937.78, abs=0.01)
    assert plain["trial_conversion_mrr"].iloc[1] == 250


def flat_history() -> pd.DataFrame:
    """New 1,000 every month and nothing else (no expansion): MRR 24,000 after 24 months (2024-01 ..
    2025-12), so the forecast starts with January 2026."""
    history = compound_history()
    history[["expansion_mrr", "contraction_mrr", "churned_mrr"]] = 0.0
    history["new_mrr"] = 1_000.0
    history["ending_mrr"] = 1_000.0 * np.arange(1, 25)
    history["starting_mrr"] = history["ending_mrr"] - 1_000.0
    return history


def test_coupons_ending_are_committed_expansion():
    # A $100/month subscription took a 20% coupon for 3 months (duration=repeating,
    # duration_in_months=3) on 2025-11-08 (month M = November): its Nov 8, Dec 8 and Jan 8 invoices are
    # 80.00, the Feb 8 one is 100.00, so February 2026 (M+3) regains 100 - 80 = 20.00 (80 x 20 / (100 - 20),
    # int_discounts_ending). Without expansion in the history, February's expansion is exactly 20.00 and
    # February ends at 24,000 + 1,000 (January's new) + 1,000 + 20 = 26,020.00; no other month expands.
    endings = pd.DataFrame({"month": [pd.Timestamp(2026, 2, 1)], "mrr": [20.0], "customers": [1.0]})
    frame = fc.forecast(flat_history(), commitments=fc.Commitments(coupon_endings=endings))
    assert frame["coupon_ending_mrr"].tolist()[:3] == [0, 20, 0]
    assert frame["expected_expansion_mrr"].tolist()[:3] == pytest.approx([0, 20.00, 0], abs=1e-9)
    assert frame["expected_mrr"].iloc[1] == pytest.approx(26_020.00, abs=1e-6)
    assert frame["expected_mrr"].iloc[-1] == pytest.approx(36_020.00, abs=1e-6)
    # a floor, not an addition (like scheduled cancellations on churn): when the expansion rate already
    # expects more (1% of February's rest, 1% x 20,937.78 x 1.03 = 215.66 > 20), nothing changes, since
    # the rate holds the coupons an ordinary month sees end
    history = compound_history()
    plain = fc.forecast(history)
    with_coupons = fc.forecast(history, commitments=fc.Commitments(coupon_endings=endings))
    assert with_coupons["expected_expansion_mrr"].tolist() == pytest.approx(plain["expected_expansion_mrr"].tolist())
    assert with_coupons["expected_mrr"].tolist() == pytest.approx(plain["expected_mrr"].tolist())


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
    from orchestration.defs.forecast import mrr_forecast
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
    bi_url = create_bi_role(url, "forecast_reader").url

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


COMMITMENTS_DDL = """
create table marts.renewals (
    period_type text, period_start date, is_complete_period boolean, is_future_period boolean,
    renewals_due bigint, mrr_up_for_renewal numeric, known_non_renewals bigint, known_non_renewal_mrr numeric,
    renewals_decided bigint, renewed bigint, churned bigint, decided_mrr numeric, renewed_mrr numeric,
    churned_mrr numeric
);
create table marts.trial_conversion (trial_month date, trials_started bigint, converted_within_30_days bigint);
create schema intermediate;
create table intermediate.int_trials_ending (trial_end_month date, mrr numeric, trials bigint);
"""


def test_asset_reads_the_renewal_calendar_and_the_trials(fresh_database):
    import logging

    from orchestration.defs.forecast import read_commitments, write_forecast

    url = fresh_database("forecast_commitments")
    history = noisy_history(30)  # 2024-01 .. 2026-06 complete, July 2026 in progress
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(MRR_MONTHLY_DDL + COMMITMENTS_DDL)
        for row in history.itertuples():
            cur.execute(
                "insert into marts.mrr_monthly values (%s,%s,%s,%s,0,%s,%s,%s,100,5,0,2,103,0)",
                (row.month.date(), row.starting_mrr, row.new_mrr, row.expansion_mrr, row.contraction_mrr)
                + (row.churned_mrr, row.ending_mrr),
            )
        cur.execute("insert into marts.mrr_monthly (month, ending_mrr) values ('2026-07-01', 1)")
        cur.execute(
            # June decided 1,000 (100 churned, 900 renewed); August: 2,000 due of which 500 known to end;
            # a quarter row is not read
            "insert into marts.renewals values "
            "('month', '2026-06-01', true, false, 10, 1000, 0, 0, 10, 9, 1, 1000, 900, 100),"
            "('month', '2026-08-01', false, true, 8, 2000, 2, 500, 0, 0, 0, 0, 0, 0),"
            "('quarter', '2026-07-01', false, false, 8, 9999, 2, 500, 0, 0, 0, 0, 0, 0)"
        )
        # 30-day conversion over trial months 2025-06 .. 2026-05: (4 + 2) / (10 + 5) = 40%; June 2026 (its
        # 30 days not over for all) and 2025-05 (over a year) are left out
        cur.execute(
            "insert into marts.trial_conversion values ('2026-05-01', 10, 4), ('2025-06-01', 5, 2), "
            "('2026-06-01', 10, 0), ('2025-05-01', 10, 10)"
        )
        # trials ending (int_trials_ending, its dbt unit test trials_ending_at_their_licensed_prices_mrr):
        # 20 MRR in July, 10 in September, October's in a currency without a rate (no MRR: counts 0)
        cur.execute(
            "insert into intermediate.int_trials_ending values ('2026-07-01', 20, 1), ('2026-09-01', 10, 1), "
            "('2026-10-01', null, 1)"
        )
    with psycopg2.connect(url) as conn:
        commitments = read_commitments(conn)
    assert commitments.trial_conversion_rate == pytest.approx(0.4)
    assert commitments.renewal_history["decided_mrr"].tolist() == [1000]
    metadata, _ = write_forecast(url, logging.getLogger("test"))
    assert metadata["trial_conversion_rate"] == 0.4 and metadata["trial_conversion_mrr_12_months"] == 12
    assert metadata["renewal_due_mrr_12_months"] == 1500
    rows = query(
        url, "select month::text, renewal_due_mrr, trial_conversion_mrr from marts.mrr_forecast order by month"
    )
    # August: 2,000 - 500 known non-renewals (already scheduled cancellations) = 1,500 up for renewal;
    # trials: 40% x 20 = 8 in July, 40% x 10 = 4 in September
    assert rows[0] == ("2026-07-01", 0, 8)
    assert rows[1] == ("2026-08-01", 1500, 0)
    assert rows[2] == ("2026-09-01", 0, 4)


COUPONS_NOW = "2025-12-15"


def _coupon_store(path, now: int):
    """Five customers billed by the simulator up to `now` (Stripe's own objects, served over its protocol):
    cus_rep20: $100/month from 2025-11-08 with 20% off for 3 months (ends 2026-02-08);
    cus_forever: $100/month from 2025-11-09 with 20% off forever (a discount without an end);
    cus_cancelling: as cus_rep20 from 2025-11-10, canceled at period end on 2025-12-12 (ends 2026-01-10);
    cus_annual: $1,200/year from 2025-10-01 with 20% off for 3 months (ends 2026-01-01, mid-term);
    cus_amount: $100/month from 2025-11-11 with $10 off for 3 months (ends 2026-02-11)."""
    from saas_metrics.demo.billing import Account, Item
    from saas_metrics.demo.store import Store
    from tests.support.clock import ts

    store = Store(path)
    acct = Account(store, now, id_prefix="C")
    start = ts("2024-01-01")
    product = acct.product("Product", start, id="prod_main")
    m100 = acct.price(product, 10000, start, id="price_m100")
    y1200 = acct.price(product, 120000, start, interval="year", id="price_y1200")
    rep20 = acct.coupon(start, percent_off=20.0, duration="repeating", duration_in_months=3, id="REP20")
    forever20 = acct.coupon(start, percent_off=20.0, duration="forever", id="FOREVER20")
    rep10off = acct.coupon(
        start, amount_off=1000, currency="usd", duration="repeating", duration_in_months=3, id="REP10"
    )
    for name, price, signup, coupon in (
        ("rep20", m100, "2025-11-08", rep20),
        ("forever", m100, "2025-11-09", forever20),
        ("cancelling", m100, "2025-11-10", rep20),
        ("annual", y1200, "2025-10-01", rep20),
        ("amount", m100, "2025-11-11", rep10off),
    ):
        customer = acct.customer(ts(signup), id=f"cus_{name}", email=f"{name}@example.com")
        sub = acct.subscribe(customer, [Item(price)], ts(signup), coupon=coupon)
        if name == "cancelling":
            sub.cancel(ts("2025-12-12"), at_period_end=True)
        sub.finish()
    acct.flush()
    return store


def test_coupons_ending_from_stripe_discounts_to_the_forecast(fresh_database, tmp_path):
    """int_discounts_ending on real Stripe discount objects (their `end`), read by the forecast asset, and
    equal to what the engine counts once the coupons have ended."""
    from orchestration.defs.forecast import read_commitments
    from tests.support.clock import ts
    from tests.support.pipeline import dbt_build, load_stripe

    now = ts(COUPONS_NOW)
    url = fresh_database("coupons_ending")
    load_stripe(_coupon_store(tmp_path / "stripe.sqlite", now), url, tmp_path, now)
    dbt_build(url, tmp_path, now, select="+int_discounts_ending +customer_mrr_current")
    rows = query(
        url,
        "select customer_id, regained_month::text, mrr_regained, mrr_regained_local, currency, ends_at::date::text"
        " from intermediate.int_discounts_ending order by customer_id",
    )
    # cus_rep20: level 80.00 today, 80 x 20 / (100 - 20) = 20.00 back with the Feb 8 invoice (month M+3);
    # cus_amount: level 90.00, $10 a month back with the Feb 11 invoice; cus_annual: level 1,200 x 80% / 12
    # = 80.00, 80 x 20 / 80 = 20.00, back at its renewal on 2026-10-01 (the discount ends mid-term);
    # cus_forever: no end; cus_cancelling: its subscription ends on Jan 10, before the coupon's end
    assert [(r[0], r[1], float(r[2]), float(r[3]), r[4], r[5]) for r in rows] == [
        ("cus_amount", "2026-02-01", 10.0, 10.0, "usd", "2026-02-11"),
        ("cus_annual", "2026-10-01", 20.0, 20.0, "usd", "2026-01-01"),
        ("cus_rep20", "2026-02-01", 20.0, 20.0, "usd", "2026-02-08"),
    ]
    # the forecast reads them by month: February 2026 regains 30.00 from 2 customers, October 20.00
    with psycopg2.connect(url) as conn:
        endings = read_commitments(conn).coupon_endings
    assert sorted((str(m)[:10], mrr, n) for m, mrr, n in endings.itertuples(index=False)) == [
        ("2026-02-01", 30.0, 2.0),
        ("2026-10-01", 20.0, 1.0),
    ]
    frame = fc.forecast(flat_history(), commitments=fc.Commitments(coupon_endings=endings))
    assert frame["expected_expansion_mrr"].iloc[1] == pytest.approx(30.0, abs=1e-9)
    assert frame["expected_expansion_mrr"].iloc[9] == pytest.approx(20.0, abs=1e-9)

    # the engine, once the coupons have ended (today 2026-02-20, a fresh build): the same +20.00 and +10.00
    later = ts("2026-02-20")
    url_later = fresh_database("coupons_ended")
    load_stripe(_coupon_store(tmp_path / "later.sqlite", later), url_later, tmp_path / "later", later)
    dbt_build(url_later, tmp_path / "later", later, select="+mrr_movements")
    moves = query(
        url_later,
        "select customer_id, movement_date::text, movement_type, mrr_after - mrr_before from marts.mrr_movements"
        " where movement_date >= '2026-01-01' order by customer_id, movement_date",
    )
    assert [(c, d, t, float(x)) for c, d, t, x in moves] == [
        ("cus_amount", "2026-02-11", "expansion", 10.0),
        ("cus_cancelling", "2026-01-10", "churn", -80.0),
        ("cus_rep20", "2026-02-08", "expansion", 20.0),
    ]
