"""Running a job of the Definitions in this process, for the settings in force: what `saas-metrics run`
and `saas-metrics demo` call. The job's op names and run config are known here, not in the CLI."""

import contextlib
import sys
from collections.abc import Callable

from orchestration.defs.jobs import REFRESH_TAGS
from saas_metrics import runs, runtime

CODE_LOCATION = "orchestration.definitions"  # the name `dagster dev -m orchestration.definitions` gives it


def run_refresh(
    full_refresh: bool = False, tags: dict | None = None, wait: bool = False, on_message: Callable[[str], None] = print
):
    """The refresh for the settings in force (saas_metrics.runtime.settings()): refresh_job (load, then
    build) when Stripe is configured, else transform_job (build from what raw_stripe holds)."""
    job_name = "refresh_job" if runtime.settings().stripe_configured else "transform_job"
    return execute_job(job_name, full_refresh=full_refresh, tags=tags, wait=wait, on_message=on_message)


def execute_job(
    job_name: str,
    full_refresh: bool = False,
    tags: dict | None = None,
    wait: bool = False,
    on_message: Callable[[str], None] = print,
):
    """Run a job of the Definitions in this process, as an ordinary run of the code location.

    The run is created the way the Dagster UI creates one (with the code location's origin), so it is in
    the job's Runs tab and can be re-executed from the UI; it executes here, in this process. A refresh
    takes the refresh lock first (saas_metrics/runs.py): with another refresh running, `wait` waits for
    it, otherwise RefreshRunning ends this one at once."""
    import dagster as dg

    runtime.prepare_dbt()
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    run_config["ops"] = {"dbt_models": {"config": {"full_refresh": full_refresh}}}
    if runtime.settings().lake.enabled:
        from orchestration.defs.lake import lake_run_config

        run_config["ops"].update(lake_run_config(full_refresh))
    if job_name == "refresh_job":
        run_config["ops"]["stripe"] = {"config": {"full_refresh": full_refresh}}
    run_tags = {runs.TRIGGER_TAG: "cli", **(tags or {})}
    url = runtime.warehouse_url()
    with contextlib.ExitStack() as stack:
        if REFRESH_TAGS.keys() & _job_tags(job_name).keys():
            stack.enter_context(runs.hold_refresh(url, wait=wait, on_wait=lambda message: on_message(message + "...")))
        instance = stack.enter_context(dg.DagsterInstance.get())
        _keep_storage_connections(instance)
        dagster_run, recon_job = _create_run(instance, job_name, run_config, run_tags)
        if runs.REFRESH_TAG in dagster_run.tags:
            # the run's own lock: while this process lives, nobody takes the run for dead
            stack.enter_context(runs.hold_refresh(url, dagster_run.run_id, wait=wait))
            for dead in runs.mark_dead_refreshes(instance, url, exclude_run_id=dagster_run.run_id):
                on_message(f"Marked run {dead.run_id[:8]} of {dead.job_name} failed: its process is gone.")
        from dagster._core.execution.api import execute_run

        result = execute_run(recon_job, dagster_run, instance, raise_on_error=False)
    if not result.success:
        raise runs.RunFailed(_failure_reason(result))
    return result


def _keep_storage_connections(instance) -> None:
    """Dagster's PostgreSQL storage opens a new connection for every event it stores (no pool: it is
    built for many short-lived processes); a refresh stores a thousand events (every model, test and
    log line), and each connection costs a process on the server and an authentication. The run holds
    a few open for its duration instead, as Dagster's webserver does (no statement timeout: 0)."""
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=8)


def _job_tags(job_name: str) -> dict:
    from orchestration.definitions import defs

    return dict(defs.resolve_job_def(job_name).tags)


def _create_run(instance, job_name: str, run_config: dict, tags: dict):
    """A NOT_STARTED run of `job_name` with the code location's origin (what `dagster job launch` creates)."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._utils.hosted_user_process import recon_job_from_origin

    from saas_metrics.config import PROJECT_DIR

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable, module_name=CODE_LOCATION, working_directory=str(PROJECT_DIR)
        ),
        location_name=CODE_LOCATION,
    )
    with origin.create_location(instance) as location:
        (repository,) = location.get_repositories().values()
        remote_job = repository.get_full_job(job_name)
        plan = location.get_execution_plan(
            remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=instance
        ).execution_plan_snapshot
        dagster_run = instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=run_config,
            resolved_op_selection=None,
            step_keys_to_execute=plan.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags={**remote_job.tags, **tags},
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=repository.asset_graph,
        )
    return dagster_run, recon_job_from_origin(dagster_run.job_code_origin)


def _failure_reason(result) -> str:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            failure = getattr(event.event_specific_data, "user_failure_data", None)
            if failure is not None and failure.description:  # a dg.Failure says it in its own words
                return f"step {event.step_key} failed: {' '.join(failure.description.split())}"
            error = event.event_specific_data.error
            message = error.message.strip() if error else "unknown error"
            cause = error.cause if error else None
            while cause is not None:  # the innermost cause says what went wrong
                message = cause.message.strip()
                cause = cause.cause
            return f"step {event.step_key} failed: {message.splitlines()[0] if message else 'unknown error'}"
    return "the run failed (see the Dagster UI for details)"
