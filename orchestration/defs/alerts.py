"""Alert sensors and the weekly summary (delivery and once-only rules: saas_metrics/alerts.py)."""

import dagster as dg
import psycopg2

from orchestration.defs.resources import SettingsResource, WarehouseResource
from orchestration.defs.schedules import refresh_job, transform_job
from saas_metrics import alerts, runtime
from saas_metrics import report as metrics_report


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


weekly_summary_schedule = dg.ScheduleDefinition(
    name="weekly_summary_schedule",
    job=weekly_summary_job,
    cron_schedule="0 8 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Monday 08:00 UTC: the weekly summary.",
)

sensors = [revenue_alerts_sensor, run_failure_alert_sensor]
