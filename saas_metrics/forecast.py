"""The 12-month MRR forecast and its backtest (METRICS.md "MRR forecast").

Pure functions on pandas frames: the Dagster asset (orchestration/defs/ml.py) reads `marts.mrr_monthly`
and the scheduled cancellations, calls these, and writes `marts.mrr_forecast` and
`marts.mrr_forecast_backtest`.

The forecast is built from the movements, not from a curve fitted to total MRR:

- expansion, reactivation, contraction and churn are rates of the month's starting MRR (reactivated
  and churned customers, of starting customers), each estimated over the last `window` complete
  months as a pooled ratio (sum of the movement / sum of starting MRR: a month with little MRR
  weighs little);
- new business is an amount, not a rate: a geometric curve whose growth compares the last 6 months'
  new MRR with 6 months up to a year earlier (shrunk towards none by its noise), and whose level
  matches the window's total;
- what is already committed is a floor: a month's churn is at least the MRR whose cancellation is
  scheduled for that month;
- the intervals come from simulation over the rates' history (SIMULATIONS paths, seeded): each path
  draws its own rates by resampling the window's months and its own new-business level (the
  uncertainty of the estimates), then each future month adds the deviation of one more drawn month
  (the month-to-month noise). Expected values are the paths' mean, the 80% and 95% intervals their
  10/90 and 2.5/97.5 percentiles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

HORIZON_MONTHS = 12
WINDOW_MONTHS = 12
SIMULATIONS = 2000
BACKTEST_HORIZONS = (1, 3, 6, 12)
MOVEMENTS = ("new", "expansion", "reactivation", "contraction", "churned")
# the mrr_monthly columns a forecast reads
HISTORY_COLUMNS = [
    "month",
    "starting_mrr",
    "new_mrr",
    "expansion_mrr",
    "reactivation_mrr",
    "contraction_mrr",
    "churned_mrr",
    "ending_mrr",
    "starting_customers",
    "new_customers",
    "reactivated_customers",
    "churned_customers",
    "ending_customers",
]


class NotEnoughHistory(ValueError):
    """Fewer complete months than the method needs."""


@dataclass(frozen=True)
class ForecastSettings:
    horizon: int = HORIZON_MONTHS
    window: int = WINDOW_MONTHS
    simulations: int = SIMULATIONS
    seed: int = 16


def _month_index(month: pd.Timestamp, months: int) -> list[pd.Timestamp]:
    start = pd.Timestamp(month).to_period("M")
    return [(start + i).to_timestamp() for i in range(1, months + 1)]


RATE_MOVEMENTS = ("expansion", "reactivation", "contraction", "churned")
NEW_BUSINESS_HALF = 6  # new business growth: the last 6 months' sum vs 6 months up to a year before
MAX_MONTHLY_GROWTH = 0.10  # new business is never extrapolated faster than +-10% a month


def _rates(window: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per month of the window: the flows that are rates of what there is, and their bases.

    Columns: expansion, reactivation, contraction and churned MRR (over starting MRR), then
    reactivated and churned customers (over starting customers)."""
    mrr = window["starting_mrr"].to_numpy(dtype=float)
    customers = window["starting_customers"].to_numpy(dtype=float)
    flows = np.column_stack(
        [window[f"{m}_mrr"].to_numpy(dtype=float) for m in RATE_MOVEMENTS]
        + [window[c].to_numpy(dtype=float) for c in ("reactivated_customers", "churned_customers")]
    )
    bases = np.column_stack([mrr] * len(RATE_MOVEMENTS) + [customers] * 2)
    return flows, bases


def new_business_growth(new_mrr: np.ndarray) -> tuple[float, float]:
    """(log growth a month, its standard error) of new MRR.

    The raw estimate is log(recent / earlier) / lag, recent being the last 6 months' sum and earlier
    the sum of the 6 months `lag` months before, with the longest lag the history allows up to 12 (a
    year apart, so a strong January does not pass for growth). Its standard error comes from the
    months' scatter (log scale, from month-to-month changes): sd * sqrt(1/6 + 1/6) / lag. The estimate
    is shrunk towards no growth by its noise, log * max(0, 1 - se^2 / log^2): growth that noise could
    explain is not extrapolated. Capped at +-MAX_MONTHLY_GROWTH; (0, 0) with fewer than 12 months."""
    half = NEW_BUSINESS_HALF
    lag = min(len(new_mrr) - half, 2 * half)
    if lag < half:
        return 0.0, 0.0
    recent, earlier = new_mrr[-half:].sum(), new_mrr[-half - lag : len(new_mrr) - lag].sum()
    if recent <= 0 or earlier <= 0:
        return 0.0, 0.0
    log_ratio = np.log(recent / earlier)
    # the months' scatter: month-to-month changes of log new MRR have twice its variance, whatever
    # the trend (a ramp-up is not noise)
    scatter = float(np.std(np.diff(np.log(new_mrr[-(half + lag) :] + 1)), ddof=1)) / np.sqrt(2)
    se = scatter * np.sqrt(2 / half)
    shrunk = log_ratio * max(0.0, 1 - se**2 / log_ratio**2) if log_ratio else 0.0
    cap = np.log1p(MAX_MONTHLY_GROWTH)
    return float(np.clip(shrunk / lag, -cap, cap)), se / lag


def new_business_level(new_mrr: np.ndarray, log_growth: np.ndarray | float, months: int) -> np.ndarray:
    """The curve's value at the last month such that its total over the last `months` months equals
    theirs: sum_{k=0}^{n-1} level * exp(g * (k - n + 1)) = recent."""
    n = min(months, len(new_mrr))
    g = np.asarray(log_growth, dtype=float)[..., None]
    return new_mrr[-n:].sum() / np.exp(g * (np.arange(n) - n + 1.0)).sum(axis=-1)


def forecast(
    history: pd.DataFrame,
    scheduled_churn: pd.DataFrame | None = None,
    settings: ForecastSettings = ForecastSettings(),
) -> pd.DataFrame:
    """Forecast the `settings.horizon` months after the last month of `history`.

    `history`: complete months of mrr_monthly (HISTORY_COLUMNS), oldest first. `scheduled_churn`:
    optional rows (month, mrr, customers) of MRR whose cancellation is already scheduled for a future
    month. Returns one row per future month with expected values and 80%/95% intervals.
    """
    history = history.sort_values("month").reset_index(drop=True)
    window = history.tail(settings.window)
    usable = window[window["starting_mrr"] > 0]
    needed = max(3, settings.window // 2)
    if len(usable) < needed:
        raise NotEnoughHistory(f"the forecast needs at least {needed} complete months with MRR, found {len(usable)}")
    flows, bases = _rates(usable)
    n_months = len(usable)
    pooled = flows.sum(axis=0) / np.where(bases.sum(axis=0) > 0, bases.sum(axis=0), 1)
    monthly = flows / np.where(bases > 0, bases, 1)
    deviations = monthly - pooled  # one month's departure from the window's rate

    rng = np.random.default_rng(settings.seed)
    sims, horizon = settings.simulations, settings.horizon
    # rates' uncertainty: each path's rates are the pooled ratio of a bootstrap sample of the window
    picks = rng.integers(0, n_months, size=(sims, n_months))
    path_rates = flows[picks].sum(axis=1) / np.maximum(bases[picks].sum(axis=1), 1e-9)
    # month-to-month noise: each future month adds the deviation of one month drawn in proportion to
    # its starting MRR (a month with little MRR has noisy rates that say little about a larger base)
    weights = bases[:, 0] / bases[:, 0].sum()
    noise = deviations[rng.choice(n_months, size=(sims, horizon), p=weights)]
    rates = np.clip(path_rates[:, None, :] + noise, 0, None)  # (sims, horizon, rates)

    # new business: a geometric curve through the last 18 months' new MRR; each path draws its growth
    # (the estimate and its standard error) and its level (the window's total times the mean of a
    # bootstrap sample of the months' ratios to the curve); each future month is one more such ratio
    new_hist = history["new_mrr"].tail(NEW_BUSINESS_HALF + 2 * NEW_BUSINESS_HALF).to_numpy(dtype=float)
    log_growth, growth_se = new_business_growth(new_hist)
    level = float(new_business_level(new_hist, log_growth, settings.window))
    n_new = min(settings.window, len(new_hist))
    fitted = level * np.exp(log_growth * (np.arange(n_new) - n_new + 1.0))
    factors = (new_hist[-n_new:] + 1) / (fitted + 1)
    factors = factors / factors.mean()  # a month's new MRR over the curve's value: 1 on average
    path_growth = log_growth + growth_se * rng.standard_normal(sims)
    path_level = new_business_level(new_hist, path_growth, settings.window)
    path_level = path_level * factors[rng.integers(0, n_new, size=(sims, n_new))].mean(axis=1)
    steps = np.arange(1, horizon + 1)
    month_factor = factors[rng.integers(0, n_new, size=(sims, horizon))]
    new_paths = path_level[:, None] * np.exp(path_growth[:, None] * steps) * month_factor
    new_customers_sum = window["new_customers"].sum()
    arpa_new = window["new_mrr"].sum() / new_customers_sum if new_customers_sum else 0.0

    last = history.iloc[-1]
    future = _month_index(last["month"], horizon)
    committed = np.zeros(horizon)
    committed_customers = np.zeros(horizon)
    if scheduled_churn is not None and len(scheduled_churn):
        by_month = scheduled_churn.groupby(pd.to_datetime(scheduled_churn["month"]))[["mrr", "customers"]].sum()
        for h, month in enumerate(future):
            if month in by_month.index:
                committed[h] = by_month.loc[month, "mrr"]
                committed_customers[h] = by_month.loc[month, "customers"]

    mrr = np.full(sims, float(last["ending_mrr"]))
    customers = np.full(sims, float(last["ending_customers"]))
    out = {k: np.zeros((sims, horizon)) for k in ("mrr", "customers", *MOVEMENTS)}
    for h in range(horizon):
        r = rates[:, h, :]
        new = new_paths[:, h]
        expansion, reactivation, contraction = r[:, 0] * mrr, r[:, 1] * mrr, r[:, 2] * mrr
        churned = np.minimum(np.maximum(r[:, 3] * mrr, committed[h]), mrr)
        ending = np.maximum(mrr + new + expansion + reactivation - contraction - churned, 0)
        churned_customers = np.minimum(np.maximum(r[:, 5] * customers, committed_customers[h]), customers)
        new_customers = new / arpa_new if arpa_new > 0 else 0.0
        customers = np.maximum(customers + new_customers + r[:, 4] * customers - churned_customers, 0)
        for key, value in (
            ("new", new),
            ("expansion", expansion),
            ("reactivation", reactivation),
            ("contraction", contraction),
            ("churned", churned),
        ):
            out[key][:, h] = value
        out["mrr"][:, h] = ending
        out["customers"][:, h] = customers
        mrr = ending

    frame = pd.DataFrame(
        {
            "month": future,
            "horizon": steps,
            "expected_mrr": out["mrr"].mean(axis=0),
            "mrr_lower_80": np.percentile(out["mrr"], 10, axis=0),
            "mrr_upper_80": np.percentile(out["mrr"], 90, axis=0),
            "mrr_lower_95": np.percentile(out["mrr"], 2.5, axis=0),
            "mrr_upper_95": np.percentile(out["mrr"], 97.5, axis=0),
            "expected_paying_customers": out["customers"].mean(axis=0),
            "paying_customers_lower_80": np.percentile(out["customers"], 10, axis=0),
            "paying_customers_upper_80": np.percentile(out["customers"], 90, axis=0),
            "paying_customers_lower_95": np.percentile(out["customers"], 2.5, axis=0),
            "paying_customers_upper_95": np.percentile(out["customers"], 97.5, axis=0),
            "scheduled_churn_mrr": committed,
        }
    )
    frame["expected_arr"] = frame["expected_mrr"] * 12
    frame["arr_lower_80"] = frame["mrr_lower_80"] * 12
    frame["arr_upper_80"] = frame["mrr_upper_80"] * 12
    frame["arr_lower_95"] = frame["mrr_lower_95"] * 12
    frame["arr_upper_95"] = frame["mrr_upper_95"] * 12
    for key in MOVEMENTS:
        values = out[key]
        column = f"{key}_mrr"
        frame[f"expected_{column}"] = values.mean(axis=0)
        frame[f"{column}_lower_80"] = np.percentile(values, 10, axis=0)
        frame[f"{column}_upper_80"] = np.percentile(values, 90, axis=0)
        frame[f"{column}_lower_95"] = np.percentile(values, 2.5, axis=0)
        frame[f"{column}_upper_95"] = np.percentile(values, 97.5, axis=0)
    frame.insert(0, "origin_month", pd.Timestamp(last["month"]))
    return frame


def naive_last_value(history: pd.DataFrame, horizon: int) -> np.ndarray:
    """Baseline: the last month's ending MRR carried forward."""
    return np.full(horizon, float(history["ending_mrr"].iloc[-1]))


def naive_linear_trend(history: pd.DataFrame, horizon: int, months: int = 6) -> np.ndarray:
    """Baseline: a least-squares line through the last `months` ending MRRs, extended."""
    y = history["ending_mrr"].tail(months).to_numpy(dtype=float)
    x = np.arange(len(y), dtype=float)
    slope, intercept = np.polyfit(x, y, 1) if len(y) > 1 else (0.0, y[-1])
    return intercept + slope * (x[-1] + np.arange(1, horizon + 1))


def backtest(
    history: pd.DataFrame,
    settings: ForecastSettings = ForecastSettings(),
    min_history: int = WINDOW_MONTHS,
    horizons: tuple[int, ...] = BACKTEST_HORIZONS,
) -> pd.DataFrame:
    """For every origin month with at least `min_history` complete months up to it, the forecast
    made from those months only vs what happened, at each horizon whose month is complete.

    Rows per (origin, horizon, method) for the model and the two naive baselines; the baselines have
    no intervals. (Scheduled cancellations are not replayed: the backtest measures the rates.)"""
    history = history.sort_values("month").reset_index(drop=True)
    actual = dict(zip(pd.to_datetime(history["month"]), history["ending_mrr"].astype(float), strict=True))
    rows = []
    for end in range(min_history, len(history)):
        seen = history.iloc[:end]
        origin = pd.Timestamp(seen["month"].iloc[-1])
        wanted = [h for h in horizons if end - 1 + h < len(history)]
        if not wanted:
            continue
        try:
            model = forecast(
                seen, None, ForecastSettings(max(wanted), settings.window, settings.simulations, settings.seed)
            )
        except NotEnoughHistory:
            continue
        last = naive_last_value(seen, max(wanted))
        trend = naive_linear_trend(seen, max(wanted))
        for h in wanted:
            target = (origin.to_period("M") + h).to_timestamp()
            value = actual[target]
            m = model.iloc[h - 1]
            for method, predicted, bounds in (
                (
                    "model",
                    m["expected_mrr"],
                    (m["mrr_lower_80"], m["mrr_upper_80"], m["mrr_lower_95"], m["mrr_upper_95"]),
                ),
                ("last_value", last[h - 1], None),
                ("linear_trend", trend[h - 1], None),
            ):
                rows.append(
                    {
                        "origin_month": origin,
                        "horizon": h,
                        "target_month": target,
                        "method": method,
                        "forecast_mrr": float(predicted),
                        "actual_mrr": value,
                        "absolute_percentage_error": abs(predicted - value) / value if value else None,
                        "lower_80": bounds[0] if bounds else None,
                        "upper_80": bounds[1] if bounds else None,
                        "lower_95": bounds[2] if bounds else None,
                        "upper_95": bounds[3] if bounds else None,
                        "is_covered_80": bool(bounds[0] <= value <= bounds[1]) if bounds else None,
                        "is_covered_95": bool(bounds[2] <= value <= bounds[3]) if bounds else None,
                    }
                )
    return pd.DataFrame(rows, columns=BACKTEST_COLUMNS)


BACKTEST_COLUMNS = [
    "origin_month",
    "horizon",
    "target_month",
    "method",
    "forecast_mrr",
    "actual_mrr",
    "absolute_percentage_error",
    "lower_80",
    "upper_80",
    "lower_95",
    "upper_95",
    "is_covered_80",
    "is_covered_95",
]


def backtest_summary(backtest_rows: pd.DataFrame) -> dict:
    """Mean absolute percentage error per method and horizon, the model's interval coverage, and
    whether the model beats both baselines at horizons 3 and 12."""
    summary: dict = {"origins": int(backtest_rows["origin_month"].nunique()) if len(backtest_rows) else 0}
    if not len(backtest_rows):
        return summary
    mape = backtest_rows.groupby(["method", "horizon"])["absolute_percentage_error"].mean()
    for (method, h), value in mape.items():
        summary[f"mape_{method}_h{h}"] = round(float(value), 4)
    model = backtest_rows[backtest_rows["method"] == "model"]
    summary["coverage_80"] = round(float(model["is_covered_80"].astype(float).mean()), 4)
    summary["coverage_95"] = round(float(model["is_covered_95"].astype(float).mean()), 4)
    for h in (3, 12):
        keys = [f"mape_{m}_h{h}" for m in ("model", "last_value", "linear_trend")]
        if all(k in summary for k in keys):
            summary[f"beats_baselines_h{h}"] = summary[keys[0]] < min(summary[keys[1]], summary[keys[2]])
    return summary
