"""Schedules: the nightly refresh, the intraday refresh (off until switched on), the hourly freshness
checks, the weekly summary."""

from __future__ import annotations

import dagster as dg

from orchestration.defs.jobs import freshness_job, refresh_job, weekly_summary_job
from saas_metrics.runs import REFRESH_TAG

# Each request already retries 429s, 5xx and dropped connections with backoff; a scheduled run
# that still fails is retried from the failed step twice more (run retries, dagster.yaml).
SCHEDULED_RUN_TAGS = {"dagster/max_retries": "2", "dagster/retry_strategy": "FROM_FAILURE", REFRESH_TAG: "nightly"}


def _utc_schedule(name: str, job, cron: str, description: str, on: bool = True, **kwargs) -> dg.ScheduleDefinition:
    """Every schedule runs on UTC and is on from the start (no one has to switch it on in the UI), but the
    intraday one (`on=False`)."""
    return dg.ScheduleDefinition(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if on else dg.DefaultScheduleStatus.STOPPED,
        description=description,
        **kwargs,
    )


nightly_refresh_schedule = _utc_schedule(
    "nightly_refresh_schedule",
    refresh_job,
    "0 0 * * *",
    "The nightly refresh at 00:00 UTC (failed runs retried twice from the failed step).",
    tags=SCHEDULED_RUN_TAGS,
)
# for those who cannot expose a webhook endpoint (`saas-metrics webhooks`): an incremental refresh every 15
# minutes from 00:15 to 23:45, the nightly keeping midnight; switched on in the UI (Automation) or with
# `dagster schedule start intraday_refresh_schedule`. No run retries: the next one is 15 minutes away.
intraday_refresh_schedule = _utc_schedule(
    "intraday_refresh_schedule",
    refresh_job,
    ["15,30,45 0 * * *", "*/15 1-23 * * *"],
    "Every 15 minutes through the day (off until switched on): the marts at most 15 minutes behind Stripe "
    "without a webhook endpoint.",
    on=False,
    tags={REFRESH_TAG: "intraday"},
)
freshness_schedule = _utc_schedule(
    "freshness_schedule", freshness_job, "30 * * * *", "Hourly: are the raw data and the marts fresh?"
)
weekly_summary_schedule = _utc_schedule(
    "weekly_summary_schedule", weekly_summary_job, "0 8 * * 1", "Monday 08:00 UTC: the weekly summary."
)

schedules = [nightly_refresh_schedule, intraday_refresh_schedule, freshness_schedule, weekly_summary_schedule]
