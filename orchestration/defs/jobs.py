"""Jobs: the refresh (load, then build), the transform alone, the freshness checks, the weekly summary."""

import dagster as dg
import psycopg2

from orchestration.defs.checks import marts_not_older_than_raw, raw_stripe_fresh
from orchestration.defs.resources import SettingsResource, WarehouseResource
from saas_metrics.analytics import alerts
from saas_metrics.analytics import report as metrics_report
from saas_metrics.runs import REFRESH_TAG

# every refresh carries saas_metrics/refresh (dagster.yaml queues them one at a time; saas_metrics/runs.py
# holds one refresh lock for the run); its value says who started it: "manual" (CLI, UI), or the schedule's
# "nightly" or "intraday"
REFRESH_TAGS = {REFRESH_TAG: "manual"}

# ingest -> dbt build (models, tests as checks). A failed load skips dbt: marts keep their last good state.
refresh_job = dg.define_asset_job(
    "refresh_job",
    selection=dg.AssetSelection.all(),
    description="Load Stripe, the finance files and product events, then build and test every dbt model "
    "(a failed load skips the build: the marts keep their last good state).",
    tags=REFRESH_TAGS,
    # every step in the run worker's process: the refresh lock is held by that process for the whole run
    executor_def=dg.in_process_executor,
)

# dbt only: when Stripe is not configured, rebuild marts from what raw_stripe already holds.
transform_job = dg.define_asset_job(
    "transform_job",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("ingestion"),
    description="Build and test every dbt model from the raw data already loaded.",
    tags=REFRESH_TAGS,
    executor_def=dg.in_process_executor,
)

# between runs, freshness is checked hourly (schedules.py): a refresh that silently stopped shows up within the hour
freshness_job = dg.define_asset_job(
    "freshness_job",
    selection=dg.AssetSelection.checks(raw_stripe_fresh, marts_not_older_than_raw),
    description="Evaluate the freshness checks (raw Stripe data, marts vs raw) without building anything.",
)


@dg.op(
    description="Compose the week's summary from the marts, with the last complete month's report cards and files, "
    "and deliver it (once per ISO week)."
)
def send_weekly_summary(
    context: dg.OpExecutionContext, warehouse: WarehouseResource, runtime_settings: SettingsResource
):
    with psycopg2.connect(warehouse.url()) as conn:
        try:  # the last complete month's report: its cards go in the summary, its files are attached
            files = metrics_report.write_report(conn, runtime_settings.get().home)
        except metrics_report.ReportError as exc:
            context.log.warning(f"no report: {exc}")
            files = None
        summary = alerts.weekly_summary(conn, report=files)
    delivered, errors = alerts.deliver(warehouse.url(), [summary], runtime_settings.get().alerts)
    if errors:
        raise dg.Failure("weekly summary delivery failed: " + "; ".join(errors))
    context.log.info(summary.message() if delivered else f"{summary.key} was already sent")


@dg.job(description="Send the weekly SaaS summary (MRR change, new and churned customers, notable movements).")
def weekly_summary_job():
    send_weekly_summary()


jobs = [refresh_job, transform_job, freshness_job, weekly_summary_job]
