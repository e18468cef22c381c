"""Looking ahead: the MRR forecast and the churn model, as assets that run after dbt in every refresh.

They read marts (aggregated in SQL), compute in pandas (saas_metrics/forecast.py,
saas_metrics/churn_model.py) and write their own tables, each replaced in one transaction. In a refresh they
read the marts its dbt build just built (`marts_build`) and stage their tables there: marts_publication
publishes them with the dbt marts at once (orchestration/defs/publish.py).
"""

import datetime as dt
import json
import time
from contextlib import closing

import dagster as dg
import pandas as pd
import psycopg2

from orchestration.defs.publish import MartsTarget, clear_staged, marts_target
from orchestration.defs.resources import WarehouseResource
from saas_metrics import churn_model as cm
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


# --- churn prediction ---------------------------------------------------------------------------

PREDICTIONS_KEY = dg.AssetKey([MARTS_SCHEMA, "churn_predictions"])
EVALUATIONS_KEY = dg.AssetKey([MARTS_SCHEMA, "churn_model_evaluations"])
CHURN_DEPS = (
    [
        dg.AssetKey([MARTS_SCHEMA, name])
        for name in (
            "customer_mrr_monthly",
            "customer_mrr_current",
            "mrr_movements",
            "account_engagement_weekly",
            "churn_risk",
        )
    ]
    + [
        dg.AssetKey(["staging", name])
        for name in (
            "stg_stripe__invoices",
            "stg_stripe__subscriptions",
            "stg_stripe__subscription_items",
            "stg_stripe__prices",
            "stg_stripe__customers",
        )
    ]
    + [dg.AssetKey(["intermediate", name]) for name in ("int_product_user_days", "int_product_accounts")]
)

MODELS_TABLE = "ops.churn_models"

CHURN_PREDICTIONS_COLUMNS = [
    ("customer_id", "text"),
    ("scoring_date", "date"),
    ("churn_probability", "numeric(6,4)"),
    ("risk_band", "text"),
    ("top_reason_1", "text"),
    ("top_reason_2", "text"),
    ("top_reason_3", "text"),
    ("mrr_at_risk", "numeric(18,4)"),
    ("model_id", "integer"),
]

CHURN_EVALUATIONS_DDL = """
create table if not exists {marts}.churn_model_evaluations (
    model_id integer primary key,
    trained_at timestamptz not null,
    evaluated_at date not null,
    train_from date not null,
    train_to date not null,
    train_rows integer not null,
    train_churns integer not null,
    eval_rows integer not null,
    eval_churns integer not null,
    model_roc_auc numeric(6,4),
    model_precision_high numeric(6,4),
    model_recall_high numeric(6,4),
    model_precision_medium numeric(6,4),
    model_recall_medium numeric(6,4),
    rules_roc_auc numeric(6,4),
    rules_precision_high numeric(6,4),
    rules_recall_high numeric(6,4),
    rules_precision_medium numeric(6,4),
    rules_recall_medium numeric(6,4),
    beats_rules boolean
);
comment on table {marts}.churn_model_evaluations is 'METRICS.md: Churn prediction (backtest per training)';
create schema if not exists ops;
create table if not exists {models} (
    model_id serial primary key,
    trained_at timestamptz not null default now(),
    scoring_date date not null,
    trained_on_from date not null,
    trained_on_to date not null,
    training_rows integer not null,
    training_churns integer not null,
    seed integer not null,
    features text[] not null,
    params jsonb not null,
    model bytea not null
);
"""


class ChurnModelConfig(dg.Config):
    """seed makes training reproducible; retrain trains a new model tonight even when it is not the
    first night of a month."""

    seed: int = 16
    retrain: bool = False


def _round(value):
    return None if value is None else round(float(value), 4)


def _latest_model(cur) -> tuple[int, cm.TrainedModel] | None:
    cur.execute(f"select model_id, model from {MODELS_TABLE} order by model_id desc limit 1")
    row = cur.fetchone()
    return (row[0], cm.TrainedModel.from_bytes(bytes(row[1]))) if row else None


def _history_start(cur, today: dt.date, marts: str = MARTS_SCHEMA) -> dt.date:
    """Scoring dates start at the first month with MRR, or 8 weeks into the product events when
    there are any (before that, every usage feature would read zero)."""
    cur.execute(f"select min(month) from {marts}.customer_mrr_monthly")
    first = cur.fetchone()[0] or today
    cur.execute(f"select min(week_start) + 56 from {marts}.account_engagement_weekly")
    product = cur.fetchone()[0]
    return max(first, product) if product else first


@dg.multi_asset(
    name="churn_model",
    specs=[
        dg.AssetSpec(
            PREDICTIONS_KEY,
            deps=CHURN_DEPS,
            group_name=GROUP,
            description="Every paying customer's probability of churning within 90 days, scored tonight by "
            "the latest churn model: risk band, the three features that raise its risk most, MRR at risk, and "
            'the model_id that scored it (METRICS.md "Churn prediction").',
        ),
        dg.AssetSpec(
            EVALUATIONS_KEY,
            deps=CHURN_DEPS,
            group_name=GROUP,
            description="One row per training of the churn model: its time-split backtest (ROC AUC, precision "
            "and recall at the band thresholds) next to the churn_risk rules' on the same customers.",
        ),
    ],
    op_tags={"saas_metrics/step": "predict"},
)
def churn_model(context: dg.AssetExecutionContext, config: ChurnModelConfig, warehouse: WarehouseResource):
    metadata, evaluation_metadata = write_churn_model(
        warehouse.url(), context.log, config.seed, config.retrain, run_id=context.run.run_id
    )
    yield dg.MaterializeResult(asset_key=PREDICTIONS_KEY, metadata={**metadata, **evaluation_metadata})
    yield dg.MaterializeResult(asset_key=EVALUATIONS_KEY, metadata=evaluation_metadata)


def write_churn_model(
    url: str, log, seed: int = 16, retrain: bool = False, train: bool | None = None, run_id: str | None = None
):
    """Train when it is due (no model yet, the first of the month, `retrain`; `train` overrides),
    then score today's paying customers with the latest model; one transaction (staged for
    marts_publication when `run_id` is a refresh waiting to publish). Returns the two assets' metadata."""
    started = time.monotonic()
    metadata: dict = {}
    evaluation_metadata: dict = {}
    with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
        target = marts_target(conn, run_id)
        _prepare_evaluations(cur, target)
        marts = target.schema
        cur.execute(f"select max(snapshot_date) from {marts}.customer_mrr_monthly")
        today = cur.fetchone()[0]
        latest = _latest_model(cur)
        if train is None:
            due = latest is None or retrain or (today is not None and today.day == 1)
        else:
            due = train
        if today is not None and due:
            reason = "no model yet" if latest is None else ("retrain asked" if retrain else "first of the month")
            dates = cm.training_dates(_history_start(cur, today, marts), today)
            history = cm.read_features(conn, dates, today, marts) if dates else pd.DataFrame()
            try:
                model = cm.train(history, seed)
            except cm.NotEnoughHistory as exc:
                message = f"churn model not trained ({reason}): {exc}"
                log.warning(message)
                metadata["training_skipped"] = message
            else:
                cur.execute(
                    f"insert into {MODELS_TABLE} (scoring_date, trained_on_from, trained_on_to, training_rows,"
                    " training_churns, seed, features, params, model) values (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " returning model_id",
                    (
                        today,
                        min(model.trained_on),
                        max(model.trained_on),
                        model.rows,
                        model.churns,
                        model.seed,
                        model.features,
                        json.dumps(model.params),
                        psycopg2.Binary(model.to_bytes()),
                    ),
                )
                model_id = cur.fetchone()[0]
                latest = (model_id, model)
                metadata.update(trained_model_id=model_id, training_rows=model.rows, training_churns=model.churns)
                try:
                    result = cm.backtest(history, seed)
                except cm.NotEnoughHistory as exc:
                    evaluation_metadata["backtest_skipped"] = f"no backtest: {exc}"
                    log.warning(evaluation_metadata["backtest_skipped"])
                else:
                    m, r = result["model"], result["rules"]
                    beats = None if m["roc_auc"] is None or r["roc_auc"] is None else m["roc_auc"] > r["roc_auc"]
                    cur.execute(
                        f"insert into {marts}.churn_model_evaluations values"
                        " (%s, now(), %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (
                            model_id,
                            result["evaluated_at"],
                            result["train_from"],
                            result["train_to"],
                            result["train_rows"],
                            result["train_churns"],
                            m["rows"],
                            m["churns"],
                            *[_round(m[k]) for k in ("roc_auc", "precision_high", "recall_high")],
                            *[_round(m[k]) for k in ("precision_medium", "recall_medium")],
                            *[_round(r[k]) for k in ("roc_auc", "precision_high", "recall_high")],
                            *[_round(r[k]) for k in ("precision_medium", "recall_medium")],
                            beats,
                        ),
                    )
                    evaluation_metadata.update(
                        model_id=model_id,
                        evaluated_at=str(result["evaluated_at"]),
                        model_roc_auc=_round(m["roc_auc"]),
                        rules_roc_auc=_round(r["roc_auc"]),
                        beats_rules=beats,
                        eval_rows=m["rows"],
                        eval_churns=m["churns"],
                    )
                    log.info(f"churn model {model_id} backtest: {evaluation_metadata}")
            metadata["training_seconds"] = round(time.monotonic() - started, 2)

        scoring_started = time.monotonic()
        frame = pd.DataFrame(columns=[name for name, _ in CHURN_PREDICTIONS_COLUMNS])
        if latest is None or today is None:
            metadata["skipped"] = metadata.get("training_skipped", "no churn model: nothing to score with")
        else:
            model_id, model = latest
            current = cm.read_features(conn, [today], today, marts)
            probability = cm.predict(model, current)
            reasons = cm.top_reasons(model, current, probability)
            frame = pd.DataFrame(
                {
                    "customer_id": current["customer_id"],
                    "scoring_date": current["scoring_date"],
                    "churn_probability": probability.round(4),
                    "risk_band": cm.risk_band(probability),
                    "top_reason_1": [r[0] if len(r) > 0 else None for r in reasons],
                    "top_reason_2": [r[1] if len(r) > 1 else None for r in reasons],
                    "top_reason_3": [r[2] if len(r) > 2 else None for r in reasons],
                    "mrr_at_risk": current["mrr"],
                    "model_id": model_id,
                }
            )
            metadata.update(
                model_id=model_id,
                scored_customers=len(frame),
                high_risk_customers=int((frame["risk_band"] == "high").sum()),
                high_risk_mrr=round(float(frame.loc[frame["risk_band"] == "high", "mrr_at_risk"].sum()), 2),
            )
        clear_staged(cur, target, "churn_predictions")
        replace_table(
            conn,
            marts,
            "churn_predictions",
            CHURN_PREDICTIONS_COLUMNS,
            frame,
            "METRICS.md: Churn prediction",
        )
        metadata["scoring_seconds"] = round(time.monotonic() - scoring_started, 2)
        if not evaluation_metadata:
            cur.execute(
                f"select model_id, evaluated_at::text, model_roc_auc::float8, rules_roc_auc::float8, beats_rules"
                f" from {marts}.churn_model_evaluations order by model_id desc limit 1"
            )
            row = cur.fetchone()
            if row:
                keys = ("model_id", "evaluated_at", "model_roc_auc", "rules_roc_auc", "beats_rules")
                evaluation_metadata = dict(zip(keys, row, strict=True))
    if "skipped" in metadata:
        log.warning(metadata["skipped"])
    log.info(f"churn_model: {metadata}")
    return metadata, evaluation_metadata


def _prepare_evaluations(cur, target: MartsTarget) -> None:
    """churn_model_evaluations gains a row per training: staged, it starts as a copy of the published one."""
    if target.staged:
        clear_staged(cur, target, "churn_model_evaluations")
        cur.execute(f"create schema if not exists {MARTS_SCHEMA}")  # a first refresh: nothing published yet
        cur.execute(CHURN_EVALUATIONS_DDL.format(marts=target.schema, models=MODELS_TABLE))
        cur.execute(CHURN_EVALUATIONS_DDL.format(marts=MARTS_SCHEMA, models=MODELS_TABLE))
        cur.execute(
            f"insert into {target.schema}.churn_model_evaluations select * from {MARTS_SCHEMA}.churn_model_evaluations"
        )
    else:
        cur.execute(CHURN_EVALUATIONS_DDL.format(marts=target.schema, models=MODELS_TABLE))


ml_assets = [mrr_forecast, churn_model]
