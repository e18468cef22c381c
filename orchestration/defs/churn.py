"""The churn model, as an asset that runs after dbt in every refresh (METRICS.md "Churn prediction"):
trained when due, stored in ops.churn_models, scoring today's paying customers.

It reads features from the marts (saas_metrics/analytics/churn_model.py), writes `churn_predictions` and a row of
`churn_model_evaluations` per training, in one transaction; in a refresh staged in `marts_build` for
marts_publication to publish with the dbt marts (orchestration/defs/publish.py).
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
from saas_metrics.analytics import churn_model as cm
from saas_metrics.config import MARTS_SCHEMA
from saas_metrics.warehouse import replace_table

GROUP = "predictions"  # with the forecast (orchestration/defs/forecast.py)

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
