"""A refresh's marts reach BI tools at once: the dbt marts and the marts Python writes after dbt (the
forecast, the churn predictions and evaluations) in one transaction (README "Operating it in Dagster").

In a run that holds the `marts_publication` asset (every refresh), the dbt build stores its publish
statements (macros/publish.sql) in ops.marts_pending_publish instead of running them; the Python assets
read the new build from `marts_build` and write their tables there; `marts_publication` then runs the
statements and moves those tables into `marts` in the same transaction. A refresh that stops anywhere
before that commit (a failed step, a kill) leaves `marts` as the last good refresh left it: the
predictions never score customers the marts do not show. A Python asset run without a dbt build in its
run (materialized alone in the UI) reads and writes `marts` itself, as before.
"""

from contextlib import closing
from dataclasses import dataclass

import dagster as dg
import psycopg2
from psycopg2 import sql

from orchestration.defs.resources import WarehouseResource
from saas_metrics.config import MARTS_SCHEMA

BUILD_SCHEMA = "marts_build"  # macros/publish.sql marts_build_schema()
PENDING_TABLE = "ops.marts_pending_publish"
PUBLISH_KEY = dg.AssetKey(["ops", "marts_publication"])
PUBLISH_NODE = "ops__marts_publication"

# the marts Python writes (orchestration/defs/forecast.py, churn.py), published with the dbt build they came from
PYTHON_MARTS = ("mrr_forecast", "mrr_forecast_backtest", "churn_predictions", "churn_model_evaluations")


def publishing_run(context: dg.AssetExecutionContext) -> str | None:
    """This run's id when the run publishes at its end (it holds marts_publication), else None."""
    selection = context.run.asset_selection  # empty (or None) when the run is its whole job
    if selection:
        return context.run.run_id if PUBLISH_KEY in selection else None
    return context.run.run_id if context.job_def.graph.has_node_named(PUBLISH_NODE) else None


def pending_statements(cur, run_id: str | None) -> str | None:
    """The publish statements run `run_id`'s dbt build stored, if it stored any."""
    if not run_id:
        return None
    cur.execute("select to_regclass(%s) is not null", (PENDING_TABLE,))
    if not cur.fetchone()[0]:
        return None
    cur.execute(f"select statements from {PENDING_TABLE} where run_id = %s", (run_id,))
    row = cur.fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class MartsTarget:
    """Where a Python asset reads the marts and writes its own: `marts_build` in a refresh whose dbt build
    waits to be published (staged), `marts` otherwise."""

    schema: str

    @property
    def staged(self) -> bool:
        return self.schema == BUILD_SCHEMA


def marts_target(conn, run_id: str | None) -> MartsTarget:
    with conn.cursor() as cur:
        return MartsTarget(BUILD_SCHEMA if pending_statements(cur, run_id) is not None else MARTS_SCHEMA)


def _relation_kind(cur, schema: str, name: str) -> str | None:
    cur.execute(
        "select relkind::text from pg_class where oid = to_regclass(%s)",
        (sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name)).as_string(cur),),
    )
    row = cur.fetchone()
    return row[0] if row else None


def clear_staged(cur, target: MartsTarget, name: str) -> None:
    """Before a staged table is written: `marts_build` may hold a view of the published table (an older
    publish) or a table a stopped refresh staged; neither may stay."""
    if not target.staged:
        return
    relation = sql.SQL("{}.{}").format(sql.Identifier(BUILD_SCHEMA), sql.Identifier(name))
    kind = _relation_kind(cur, BUILD_SCHEMA, name)
    if kind == "v":
        cur.execute(sql.SQL("drop view {}").format(relation))
    elif kind is not None:
        cur.execute(sql.SQL("drop table {}").format(relation))


def publish_refresh(url: str, run_id: str) -> dict:
    """Run the publish statements this run's dbt build stored and move the Python marts it staged into
    `marts`, in one transaction. Returns the asset's metadata."""
    with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
        statements = pending_statements(cur, run_id)
        if statements is None:
            # the build published nothing (it built no mart), and the Python assets wrote `marts` themselves
            return {"published": "nothing was waiting: the Python marts were written to marts directly"}
        cur.execute(statements)  # the dbt marts (and the pg_temp helpers used below)
        moved = []
        for name in PYTHON_MARTS:
            if _relation_kind(cur, BUILD_SCHEMA, name) in ("r", "p"):
                cur.execute("select pg_temp.marts_publish_table(%s, %s, %s)", (BUILD_SCHEMA, MARTS_SCHEMA, name))
                # the view marts_publish_table leaves behind would block a later direct write of marts.<name>
                cur.execute(sql.SQL("drop view {}.{}").format(sql.Identifier(BUILD_SCHEMA), sql.Identifier(name)))
                moved.append(name)
        cur.execute(f"delete from {PENDING_TABLE}")
    return {"python_marts_published": ", ".join(moved) or "none", "dbt_marts_published": True}


@dg.asset(
    key=PUBLISH_KEY,
    deps=[dg.AssetKey([MARTS_SCHEMA, name]) for name in PYTHON_MARTS],  # and, through them, every dbt mart they read
    group_name="publication",
    description="Publishes the refresh into schema marts in one transaction: the marts dbt built and the "
    "forecast and churn predictions computed from them. Until it commits, BI tools read the last good refresh.",
    op_tags={"saas_metrics/step": "publish"},
)
def marts_publication(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    metadata = publish_refresh(warehouse.url(), context.run.run_id)
    context.log.info(f"marts published: {metadata}")
    return dg.MaterializeResult(metadata=metadata)


# The month close's history (dbt_project/macros/month_close.sql): written by the publish itself, in its transaction,
# and read by the restatement marts as a dbt source. External assets, so that the graph says where they come from.
MONTH_CLOSE_TABLES = [
    dg.AssetSpec(
        key=dg.AssetKey(["history", name]),
        group_name="publication",
        description=description
        + ' Written by the first publish after a month ends, never changed (METRICS.md "Month close: as reported'
        ' and as restated").',
    )
    for name, description in (
        ("month_close", "The closed months, when each was reported."),
        ("month_close_metrics", "Every figure of mrr_monthly and saas_kpis_monthly of a closed month, as reported."),
        ("month_close_customers", "Each paying customer's MRR of a closed month, as reported."),
    )
]
