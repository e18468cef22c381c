"""The 12-month MRR forecast and its backtest (METRICS.md "MRR forecast").

Pure functions on pandas frames: the Dagster asset (orchestration/defs/forecast.py) reads `marts.mrr_monthly`
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
- what is already committed: a month's churn is at least the MRR whose cancellation is scheduled for
  that month; the MRR of terms ending in a month (the renewal calendar) is judged at the term's end
  at the historical renewal rates, and the monthly rates are estimated without the renewal points;
  trials ending in a month convert at the historical rate, a floor on that month's new MRR; the MRR
  coupons ending in a month give back (the next invoice at full price) is a floor on its expansion;
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
# the renewals history a forecast reads (marts.renewals, month rows of complete months)
RENEWAL_HISTORY_COLUMNS = ["month", "decided_mrr", "renewed_mrr", "churned_mrr", "renewals_decided", "churned"]


@dataclass(frozen=True)
class Commitments:
    """What is already known about the months ahead (all optional).

    `renewal_history`: per complete month, the terms decided (RENEWAL_HISTORY_COLUMNS: MRR before the
    end, MRR after it of the renewed, MRR of the churned, and their counts). `renewal_calendar`: rows
    (month, mrr, customers) of terms ending in a future month whose fate is open (known non-renewals
    are scheduled cancellations). `trials`: rows (month, mrr, customers) of trials in progress by the
    month they end, at their price's MRR; `trial_conversion_rate` the share that converts.
    `coupon_endings`: rows (month, mrr, customers) of the MRR paying subscriptions regain in a future
    month because a discount ends (int_discounts_ending)."""

    renewal_history: pd.DataFrame | None = None
    renewal_calendar: pd.DataFrame | None = None
    trials: pd.DataFrame | None = None
    trial_conversion_rate: float = 0.0
    coupon_endings: pd.DataFrame | None = None


def _by_future_month(rows: pd.DataFrame | None, future: list[pd.Timestamp]) -> tuple[np.ndarray, np.ndarray]:
    """(mrr, customers) per future month of rows (month, mrr, customers); zeros elsewhere."""
    mrr, customers = np.zeros(len(future)), np.zeros(len(future))
    if rows is not None and len(rows):
        by_month = rows.groupby(pd.to_datetime(rows["month"]))[["mrr", "customers"]].sum()
        for h, month in enumerate(future):
            if month in by_month.index:
                mrr[h] = float(by_month.loc[month, "mrr"])
                customers[h] = float(by_month.loc[month, "customers"])
    return mrr, customers


def _renewal_flows(window: pd.DataFrame, renewal_history: pd.DataFrame | None) -> np.ndarray:
    """Per window month: decided MRR, renewal churned MRR, renewal net change of the renewed (after -
    before), decided terms, churned terms; zeros without a renewals history."""
    out = np.zeros((len(window), 5))
    if renewal_history is None or not len(renewal_history):
        return out
    by_month = renewal_history.assign(month=pd.to_datetime(renewal_history["month"])).set_index("month")
    for i, month in enumerate(pd.to_datetime(window["month"])):
        if month in by_month.index:
            r = by_month.loc[month]
            decided, renewed, churned = float(r["decided_mrr"]), float(r["renewed_mrr"]), float(r["churned_mrr"])
            out[i] = [
                decided,
                churned,
                renewed - (decided - churned),
                float(r["renewals_decided"]),
                float(r["churned"]),
            ]
    return out


RATE_COLUMNS_NON_NEGATIVE = [0, 1, 2, 3, 4, 5, 6, 8]  # all but the renewals' net change (either sign)
NEW_BUSINESS_HALF = 6  # new business growth: the last 6 months' sum vs 6 months up to a year before
MAX_MONTHLY_GROWTH = 0.10  # new business is never extrapolated faster than +-10% a month


def _rates(window: pd.DataFrame, renewal_history: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per month of the window: the flows that are rates of what there is, and their bases.

    Columns: expansion, reactivation, contraction and churned MRR (over starting MRR), then
    reactivated and churned customers (over starting customers); then the renewal points' churned
    MRR and net change of the renewed (over the decided terms' MRR) and churned terms (over decided
    terms). With a renewals history the monthly rates leave the renewal points out: their churn,
    net change and decided MRR (terms) come off the movements and the bases."""
    renewal = _renewal_flows(window, renewal_history)
    decided, r_churned, r_net, decided_n, churned_n = renewal.T
    mrr = np.maximum(window["starting_mrr"].to_numpy(dtype=float) - decided, 0)
    customers = np.maximum(window["starting_customers"].to_numpy(dtype=float) - decided_n, 0)
    movement = {m: window[f"{m}_mrr"].to_numpy(dtype=float) for m in RATE_MOVEMENTS}
    movement["churned"] = np.maximum(movement["churned"] - r_churned, 0)
    movement["expansion"] = np.maximum(movement["expansion"] - np.maximum(r_net, 0), 0)
    movement["contraction"] = np.maximum(movement["contraction"] - np.maximum(-r_net, 0), 0)
    flows = np.column_stack(
        [movement[m] for m in RATE_MOVEMENTS]
        + [window["reactivated_customers"].to_numpy(dtype=float)]
        + [np.maximum(window["churned_customers"].to_numpy(dtype=float) - churned_n, 0)]
        + [r_churned, r_net, churned_n]
    )
    bases = np.column_stack([mrr] * len(RATE_MOVEMENTS) + [customers] * 2 + [decided] * 2 + [decided_n])
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
    commitments: Commitments = Commitments(),
) -> pd.DataFrame:
    """Forecast the `settings.horizon` months after the last month of `history`.

    `history`: complete months of mrr_monthly (HISTORY_COLUMNS), oldest first. `scheduled_churn`:
    optional rows (month, mrr, customers) of MRR whose cancellation is already scheduled for a future
    month. `commitments`: the renewal calendar and trials in progress (see `Commitments`). Returns one
    row per future month with expected values and 80%/95% intervals.
    """
    history = history.sort_values("month").reset_index(drop=True)
    window = history.tail(settings.window)
    usable = window[window["starting_mrr"] > 0]
    needed = max(3, settings.window // 2)
    if len(usable) < needed:
        raise NotEnoughHistory(f"the forecast needs at least {needed} complete months with MRR, found {len(usable)}")
    flows, bases = _rates(usable, commitments.renewal_history)
    n_months = len(usable)
    pooled = flows.sum(axis=0) / np.where(bases.sum(axis=0) > 0, bases.sum(axis=0), 1)
    monthly = flows / np.where(bases > 0, bases, 1)
    deviations = monthly - pooled  # one month's departure from the window's rate
    deviations[:, 6:] = 0  # renewal rates: only their estimate's uncertainty (few terms a month)

    rng = np.random.default_rng(settings.seed)
    sims, horizon = settings.simulations, settings.horizon
    # rates' uncertainty: each path's rates are the pooled ratio of a bootstrap sample of the window
    picks = rng.integers(0, n_months, size=(sims, n_months))
    path_rates = flows[picks].sum(axis=1) / np.maximum(bases[picks].sum(axis=1), 1e-9)
    # month-to-month noise: each future month adds the deviation of one month drawn in proportion to
    # its starting MRR (a month with little MRR has noisy rates that say little about a larger base)
    weights = bases[:, 0] / bases[:, 0].sum()
    noise = deviations[rng.choice(n_months, size=(sims, horizon), p=weights)]
    rates = path_rates[:, None, :] + noise  # (sims, horizon, rates)
    rates[:, :, RATE_COLUMNS_NON_NEGATIVE] = np.clip(rates[:, :, RATE_COLUMNS_NON_NEGATIVE], 0, None)

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
    committed, committed_customers = _by_future_month(scheduled_churn, future)
    renewal_due, renewal_due_customers = _by_future_month(commitments.renewal_calendar, future)
    if not bases[:, 6].sum():  # no renewal decided in the window: the monthly rates hold the renewals
        renewal_due, renewal_due_customers = np.zeros(horizon), np.zeros(horizon)
    trial_mrr, trial_customers = _by_future_month(commitments.trials, future)
    trial_mrr, trial_customers = (
        trial_mrr * commitments.trial_conversion_rate,
        trial_customers * commitments.trial_conversion_rate,
    )
    coupon_mrr, _ = _by_future_month(commitments.coupon_endings, future)

    mrr = np.full(sims, float(last["ending_mrr"]))
    customers = np.full(sims, float(last["ending_customers"]))
    out = {k: np.zeros((sims, horizon)) for k in ("mrr", "customers", *MOVEMENTS)}
    for h in range(horizon):
        r = rates[:, h, :]
        # trials ending this month convert at the historical rate: a floor on new business (the curve
        # already holds the trials that convert in an ordinary month)
        new = np.maximum(new_paths[:, h], trial_mrr[h])
        # terms ending this month are judged at the renewal rates, the rest of MRR at the monthly ones
        due = np.minimum(renewal_due[h], mrr)
        rest = mrr - due
        renewal_net = r[:, 7] * due
        # coupons ending this month give their MRR back: a floor on expansion, like scheduled cancellations
        # on churn (the expansion rate already holds the coupons an ordinary month sees end)
        expansion = np.maximum(r[:, 0] * rest + np.maximum(renewal_net, 0), coupon_mrr[h])
        contraction = r[:, 2] * rest + np.maximum(-renewal_net, 0)
        reactivation = r[:, 1] * mrr
        churned = np.minimum(np.maximum(r[:, 3] * rest + r[:, 6] * due, committed[h]), mrr)
        ending = np.maximum(mrr + new + expansion + reactivation - contraction - churned, 0)
        due_customers = np.minimum(renewal_due_customers[h], customers)
        churned_customers = np.minimum(
            np.maximum(r[:, 5] * (customers - due_customers) + r[:, 8] * due_customers, committed_customers[h]),
            customers,
        )
        new_customers = np.maximum(new / arpa_new if arpa_new > 0 else 0.0, trial_customers[h])
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
            "renewal_due_mrr": renewal_due,
            "trial_conversion_mrr": trial_mrr,
            "coupon_ending_mrr": coupon_mrr,
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
