"""Schedules: the nightly refresh, the hourly freshness checks, the weekly summary."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.jobs import freshness_job, refresh_job, weekly_summary_job
from saas_metrics.runs import REFRESH_TAG

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

freshness_schedule = dg.ScheduleDefinition(
    name="freshness_schedule",
    job=freshness_job,
    cron_schedule="30 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: are the raw data and the marts fresh?",
)

weekly_summary_schedule = dg.ScheduleDefinition(
    name="weekly_summary_schedule",
    job=weekly_summary_job,
    cron_schedule="0 8 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Monday 08:00 UTC: the weekly summary.",
)

schedules = [nightly_refresh_schedule, freshness_schedule, weekly_summary_schedule]
