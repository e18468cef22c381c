"""Jobs and schedules."""

from __future__ import annotations

import dagster as dg

from saas_metrics.runs import REFRESH_TAG

# every refresh carries saas_metrics/refresh (dagster.yaml queues them one at a time; saas_metrics/runs.py
# holds one refresh lock for the run); its value says who started it: "manual" (CLI, UI) or "nightly"
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

# Each request already retries 429s, 5xx and dropped connections with backoff; a scheduled run
# that still fails is retried from the failed step twice more (run retries, dagster.yaml).
SCHEDULED_RUN_TAGS = {"dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE", REFRESH_TAG: "nightly"}

nightly_refresh_schedule = dg.ScheduleDefinition(
    name="nightly_refresh_schedule",
    job=refresh_job,
    cron_schedule="0 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    tags=SCHEDULED_RUN_TAGS,
    description="The nightly refresh at 00:00 UTC (failed runs retried twice from the failed step).",
)
