"""Sensors: revenue alerts after each refresh, an alert for each failed run (delivery and once-only rules:
saas_metrics/analytics/alerts.py), and refreshes left STARTED by a dead process marked failed, so that the queued
nightly is not held behind them (the lock that tells a live run from a dead one: saas_metrics/runs.py)."""

import dagster as dg
import psycopg2

from orchestration.defs.jobs import refresh_job, transform_job
from saas_metrics import runs, runtime
from saas_metrics.analytics import alerts


def _deliver(found: list[alerts.Alert]) -> tuple[list[alerts.Alert], list[str]]:
    settings = runtime.settings()
    return alerts.deliver(runtime.warehouse_url(), found, settings.alerts)


@dg.run_status_sensor(
    name="revenue_alerts_sensor",
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[refresh_job, transform_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After each successful refresh: high-value churns and scheduled cancellations, monthly logo "
    "churn and NRR past their thresholds, MRR milestones. Each event is announced once.",
)
def revenue_alerts_sensor(context: dg.RunStatusSensorContext):
    settings = runtime.settings()
    with psycopg2.connect(runtime.warehouse_url()) as conn:
        found = alerts.revenue_alerts(conn, settings.alerts)
    delivered, errors = _deliver(found)
    context.log.info(f"{len(delivered)} alert(s) delivered, {len(found) - len(delivered)} already announced")
    if errors:
        raise dg.Failure("alert delivery failed (retried at the next run): " + "; ".join(errors))


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="A failed run (a failed step, or a failed blocking check) is announced once.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext):
    run = context.dagster_run
    reason = context.failure_event.message or "no reason recorded"
    failed_checks = [
        f"{e.asset_check_evaluation_data.asset_key.to_user_string()}:{e.asset_check_evaluation_data.check_name}"
        for e in context.instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        if e.dagster_event and not e.dagster_event.asset_check_evaluation_data.passed
    ]
    text = reason.splitlines()[0]
    if failed_checks:
        text += "\nFailed checks: " + ", ".join(failed_checks)
    alert = alerts.Alert(f"run_failed:{run.run_id}", f"Run of {run.job_name} failed ({run.run_id[:8]})", text)
    _, errors = _deliver([alert])
    if errors:
        raise dg.Failure("alert delivery failed: " + "; ".join(errors))


@dg.sensor(
    name="dead_refresh_runs_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every minute: a refresh that Dagster keeps as STARTED but whose process is gone (killed, out of "
    "memory, a reboot) is marked failed, so that the next refresh (the queued nightly included) runs.",
)
def dead_refresh_runs_sensor(context: dg.SensorEvaluationContext):
    settings = runtime.settings()
    if settings.uses_embedded_db and not runtime.embedded_postgres(settings).status().running:
        return dg.SkipReason("the embedded PostgreSQL is not running (not started for this)")
    dead = runs.mark_dead_refreshes(context.instance, runtime.warehouse_url())
    if dead:
        return dg.SkipReason("marked failed (process gone): " + ", ".join(r.run_id[:8] for r in dead))
    return dg.SkipReason("no dead refresh")


sensors = [revenue_alerts_sensor, run_failure_alert_sensor, dead_refresh_runs_sensor]
