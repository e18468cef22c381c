"""The MRR forecast and its backtest, as an asset that runs after dbt in every refresh (METRICS.md "MRR
forecast").

It reads marts and intermediate models (aggregated in SQL: `int_trials_ending`, `int_discounts_ending`),
computes in pandas (saas_metrics/analytics/forecast.py) and replaces its two tables in one transaction. In a refresh
it reads the marts its dbt build just built (`marts_build`) and stages its tables there: marts_publication
publishes them with the dbt marts at once (orchestration/defs/publish.py).
"""

import time
from contextlib import closing

import dagster as dg
import pandas as pd
import psycopg2

from orchestration.defs.publish import clear_staged, marts_target
from orchestration.defs.resources import WarehouseResource
from saas_metrics.analytics import forecast as fc
from saas_metrics.config import MARTS_SCHEMA
from saas_metrics.warehouse import replace_table

GROUP = "predictions"

MRR_FORECAST_COLUMNS = [
    ("origin_month", "date"),
    ("month", "date"),
    ("horizon", "integer"),
    ("expected_mrr", "numeric(18,4)"),
    ("mrr_lower_80", "numeric(18,4)"),
    ("mrr_upper_80", "numeric(18,4)"),
    ("mrr_lower_95", "numeric(18,4)"),
    ("mrr_upper_95", "numeric(18,4)"),
    ("expected_arr", "numeric(18,4)"),
    ("arr_lower_80", "numeric(18,4)"),
    ("arr_upper_80", "numeric(18,4)"),
    ("arr_lower_95", "numeric(18,4)"),
    ("arr_upper_95", "numeric(18,4)"),
    ("expected_paying_customers", "numeric(12,1)"),
    ("paying_customers_lower_80", "numeric(12,1)"),
    ("paying_customers_upper_80", "numeric(12,1)"),
    ("paying_customers_lower_95", "numeric(12,1)"),
    ("paying_customers_upper_95", "numeric(12,1)"),
    *[
        (f"{prefix}{movement}_mrr{suffix}", "numeric(18,4)")
        for movement in ("new", "expansion", "contraction", "churned", "reactivation")
        for prefix, suffix in (
            ("expected_", ""),
            ("", "_lower_80"),
            ("", "_upper_80"),
            ("", "_lower_95"),
            ("", "_upper_95"),
        )
    ],
    ("scheduled_churn_mrr", "numeric(18,4)"),
    ("renewal_due_mrr", "numeric(18,4)"),
    ("trial_conversion_mrr", "numeric(18,4)"),
    ("coupon_ending_mrr", "numeric(18,4)"),
]

MRR_FORECAST_BACKTEST_COLUMNS = [
    ("origin_month", "date"),
    ("horizon", "integer"),
    ("target_month", "date"),
    ("method", "text"),
    ("forecast_mrr", "numeric(18,4)"),
    ("actual_mrr", "numeric(18,4)"),
    ("absolute_percentage_error", "numeric(12,6)"),
    ("lower_80", "numeric(18,4)"),
    ("upper_80", "numeric(18,4)"),
    ("lower_95", "numeric(18,4)"),
    ("upper_95", "numeric(18,4)"),
    ("is_covered_80", "boolean"),
    ("is_covered_95", "boolean"),
]


def read_forecast_inputs(conn, marts: str = MARTS_SCHEMA) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Complete months of the waterfall (the last row of mrr_monthly is the month in progress) and the
    MRR whose cancellation is scheduled, by the month it ends."""
    columns = ", ".join(fc.HISTORY_COLUMNS)
    with conn.cursor() as cur:
        cur.execute(
            f"select {columns} from {marts}.mrr_monthly"
            f" where month < (select max(month) from {marts}.mrr_monthly) order by month"
        )
        history = pd.DataFrame(cur.fetchall(), columns=fc.HISTORY_COLUMNS)
        cur.execute(
            f"""
            select date_trunc('month', scheduled_cancel_at)::date as month,
                   sum(pending_churn_mrr) as mrr,
                   count(*) filter (where pending_churn_mrr >= mrr and mrr > 0) as customers
            from {marts}.customer_mrr_current
            where has_scheduled_cancellation and pending_churn_mrr > 0
            group by 1
            """
        )
        scheduled = pd.DataFrame(cur.fetchall(), columns=["month", "mrr", "customers"])
    history["month"] = pd.to_datetime(history["month"])
    for column in fc.HISTORY_COLUMNS[1:]:
        history[column] = history[column].astype(float)
    scheduled["mrr"] = scheduled["mrr"].astype(float)
    return history, scheduled


def _exists(cur, relation: str) -> bool:
    cur.execute("select to_regclass(%s) is not null", (relation,))
    return bool(cur.fetchone()[0])


def _frame(cur, sql: str, columns: list[str], params=None) -> pd.DataFrame:
    cur.execute(sql, params)
    frame = pd.DataFrame(cur.fetchall(), columns=columns)
    for column in columns[1:]:
        frame[column] = frame[column].astype(float)
    return frame


def read_commitments(conn, marts: str = MARTS_SCHEMA) -> fc.Commitments:
    """The renewal calendar and its history (`marts.renewals`, month rows), the trials in progress at
    their price's MRR by the month they end (`int_trials_ending`), and the trials' 30-day conversion rate
    over the trial months of the last year whose 30 days have passed (`marts.trial_conversion`), and the
    MRR coupons ending give back by month (`int_discounts_ending`). A missing table leaves its part out
    (METRICS.md "MRR forecast")."""
    renewal_history = renewal_calendar = trials = coupon_endings = None
    rate = 0.0
    current = f"(select max(month) from {marts}.mrr_monthly)"
    with conn.cursor() as cur:
        if _exists(cur, f"{marts}.renewals"):
            renewal_history = _frame(
                cur,
                f"select period_start, decided_mrr, renewed_mrr, churned_mrr, renewals_decided, churned"
                f" from {marts}.renewals where period_type = 'month' and is_complete_period",
                fc.RENEWAL_HISTORY_COLUMNS,
            )
            renewal_calendar = _frame(
                cur,
                f"select period_start, mrr_up_for_renewal - known_non_renewal_mrr, renewals_due - known_non_renewals"
                f" from {marts}.renewals where period_type = 'month' and not is_complete_period",
                ["month", "mrr", "customers"],
            )
        if _exists(cur, f"{marts}.trial_conversion"):
            cur.execute(
                f"select sum(converted_within_30_days)::float / nullif(sum(trials_started), 0)"
                f" from {marts}.trial_conversion"
                f" where trial_month >= {current} - interval '13 months'"
                f" and trial_month <= {current} - interval '2 months'"
            )
            rate = float(cur.fetchone()[0] or 0.0)
        if rate and _exists(cur, "intermediate.int_trials_ending"):
            trials = _frame(
                cur,
                "select trial_end_month, coalesce(mrr, 0), trials from intermediate.int_trials_ending",
                ["month", "mrr", "customers"],
            )
        if _exists(cur, "intermediate.int_discounts_ending"):
            coupon_endings = _frame(
                cur,
                "select regained_month, sum(mrr_regained), count(distinct customer_id)"
                " from intermediate.int_discounts_ending group by regained_month",
                ["month", "mrr", "customers"],
            )
    return fc.Commitments(renewal_history, renewal_calendar, trials, rate, coupon_endings)


FORECAST_KEY = dg.AssetKey([MARTS_SCHEMA, "mrr_forecast"])
BACKTEST_KEY = dg.AssetKey([MARTS_SCHEMA, "mrr_forecast_backtest"])
FORECAST_DEPS = [
    dg.AssetKey([MARTS_SCHEMA, name])
    for name in ("mrr_monthly", "customer_mrr_current", "renewals", "trial_conversion")
] + [dg.AssetKey(["intermediate", name]) for name in ("int_trials_ending", "int_discounts_ending")]


@dg.multi_asset(
    name="mrr_forecast",
    specs=[
        dg.AssetSpec(
            FORECAST_KEY,
            deps=FORECAST_DEPS,
            group_name=GROUP,
            description="The next 12 months' MRR, ARR, paying customers and movements with 80%/95% intervals, "
            "from the movement rates of the last 12 complete months and what is committed (scheduled "
            "cancellations, the renewal calendar, trials converting at their historical rate, coupons ending) "
            '(METRICS.md "MRR forecast").',
        ),
        dg.AssetSpec(
            BACKTEST_KEY,
            deps=FORECAST_DEPS,
            group_name=GROUP,
            description="Every past origin month's forecast vs what happened at horizons 1, 3, 6 and 12, next "
            "to the naive baselines (last value carried forward, 6-month linear trend); the mean errors and the "
            "intervals' coverage are in the metadata.",
        ),
    ],
    op_tags={"saas_metrics/step": "predict"},
)
def mrr_forecast(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    metadata, backtest_metadata = write_forecast(warehouse.url(), context.log, context.run.run_id)
    yield dg.MaterializeResult(asset_key=FORECAST_KEY, metadata=metadata)
    yield dg.MaterializeResult(asset_key=BACKTEST_KEY, metadata=backtest_metadata)


def write_forecast(url: str, log, run_id: str | None = None) -> tuple[dict, dict]:
    """Forecast and backtest from the warehouse's marts, both tables replaced in one transaction (staged
    for marts_publication when `run_id` is a refresh waiting to publish); returns the two assets' metadata."""
    started = time.monotonic()
    with closing(psycopg2.connect(url)) as conn, conn:
        target = marts_target(conn, run_id)
        history, scheduled = read_forecast_inputs(conn, target.schema)
        commitments = read_commitments(conn, target.schema)
        try:
            frame = fc.forecast(history, scheduled, commitments=commitments)
            message = None
        except fc.NotEnoughHistory as exc:
            frame = pd.DataFrame(columns=[name for name, _ in MRR_FORECAST_COLUMNS])
            message = f"no forecast: {exc}"
            log.warning(message)
        backtest_rows = fc.backtest(history)
        summary = fc.backtest_summary(backtest_rows)
        with conn.cursor() as cur:
            clear_staged(cur, target, "mrr_forecast")
            clear_staged(cur, target, "mrr_forecast_backtest")
        replace_table(conn, target.schema, "mrr_forecast", MRR_FORECAST_COLUMNS, frame, "METRICS.md: MRR forecast")
        replace_table(
            conn,
            target.schema,
            "mrr_forecast_backtest",
            MRR_FORECAST_BACKTEST_COLUMNS,
            backtest_rows,
            "METRICS.md: MRR forecast (backtest)",
        )
    seconds = round(time.monotonic() - started, 2)
    metadata: dict = {"months_of_history": len(history), "rows": len(frame), "seconds": seconds}
    if message:
        metadata["skipped"] = message
    else:
        metadata["expected_mrr_in_12_months"] = round(float(frame["expected_mrr"].iloc[-1]), 2)
        metadata["renewal_due_mrr_12_months"] = round(float(frame["renewal_due_mrr"].sum()), 2)
        metadata["trial_conversion_rate"] = round(commitments.trial_conversion_rate, 4)
        metadata["trial_conversion_mrr_12_months"] = round(float(frame["trial_conversion_mrr"].sum()), 2)
        metadata["coupon_ending_mrr_12_months"] = round(float(frame["coupon_ending_mrr"].sum()), 2)
        metadata["mrr_80_interval_in_12_months"] = (
            f"{frame['mrr_lower_80'].iloc[-1]:,.2f} - {frame['mrr_upper_80'].iloc[-1]:,.2f}"
        )
    backtest_metadata = {**summary, "rows": len(backtest_rows)}
    log.info(f"mrr_forecast: {metadata}; backtest: {backtest_metadata}")
    return {**metadata, **summary}, backtest_metadata
