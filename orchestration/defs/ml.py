"""Looking ahead: the MRR forecast and the churn model, as assets that run after dbt in every refresh.

They read marts (aggregated in SQL), compute in pandas (saas_metrics/forecast.py,
saas_metrics/churn_model.py) and write their own tables in `marts`, each replaced in one transaction.
"""

import time

import dagster as dg
import pandas as pd
import psycopg2

from orchestration.defs.resources import WarehouseResource
from saas_metrics import forecast as fc
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


def read_forecast_inputs(conn) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Complete months of the waterfall (the last row of mrr_monthly is the month in progress) and the
    MRR whose cancellation is scheduled, by the month it ends."""
    columns = ", ".join(fc.HISTORY_COLUMNS)
    with conn.cursor() as cur:
        cur.execute(
            f"select {columns} from {MARTS_SCHEMA}.mrr_monthly"
            f" where month < (select max(month) from {MARTS_SCHEMA}.mrr_monthly) order by month"
        )
        history = pd.DataFrame(cur.fetchall(), columns=fc.HISTORY_COLUMNS)
        cur.execute(
            f"""
            select date_trunc('month', scheduled_cancel_at)::date as month,
                   sum(pending_churn_mrr) as mrr,
                   count(*) filter (where pending_churn_mrr >= mrr and mrr > 0) as customers
            from {MARTS_SCHEMA}.customer_mrr_current
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


FORECAST_KEY = dg.AssetKey([MARTS_SCHEMA, "mrr_forecast"])
BACKTEST_KEY = dg.AssetKey([MARTS_SCHEMA, "mrr_forecast_backtest"])
FORECAST_DEPS = [dg.AssetKey([MARTS_SCHEMA, "mrr_monthly"]), dg.AssetKey([MARTS_SCHEMA, "customer_mrr_current"])]


@dg.multi_asset(
    name="mrr_forecast",
    specs=[
        dg.AssetSpec(
            FORECAST_KEY,
            deps=FORECAST_DEPS,
            group_name=GROUP,
            description="The next 12 months' MRR, ARR, paying customers and movements with 80%/95% intervals, "
            "from the movement rates of the last 12 complete months and the scheduled cancellations "
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
    started = time.monotonic()
    with psycopg2.connect(warehouse.url()) as conn:
        history, scheduled = read_forecast_inputs(conn)
        try:
            frame = fc.forecast(history, scheduled)
            message = None
        except fc.NotEnoughHistory as exc:
            frame = pd.DataFrame(columns=[name for name, _ in MRR_FORECAST_COLUMNS])
            message = f"no forecast: {exc}"
            context.log.warning(message)
        backtest_rows = fc.backtest(history)
        summary = fc.backtest_summary(backtest_rows)
        replace_table(conn, MARTS_SCHEMA, "mrr_forecast", MRR_FORECAST_COLUMNS, frame, "METRICS.md: MRR forecast")
        replace_table(
            conn,
            MARTS_SCHEMA,
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
        metadata["mrr_80_interval_in_12_months"] = (
            f"{frame['mrr_lower_80'].iloc[-1]:,.2f} - {frame['mrr_upper_80'].iloc[-1]:,.2f}"
        )
    backtest_metadata = {**summary, "rows": len(backtest_rows)}
    context.log.info(f"mrr_forecast: {metadata}; backtest: {backtest_metadata}")
    yield dg.MaterializeResult(asset_key=FORECAST_KEY, metadata={**metadata, **summary})
    yield dg.MaterializeResult(asset_key=BACKTEST_KEY, metadata=backtest_metadata)


ml_assets = [mrr_forecast]
