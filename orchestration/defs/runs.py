"""Refreshes left STARTED by a dead process are marked failed, so the queued nightly is not held behind
them (the lock that tells a live run from a dead one: saas_metrics/runs.py)."""

import dagster as dg

from saas_metrics import runs, runtime


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
