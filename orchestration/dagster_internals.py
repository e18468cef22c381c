"""The Dagster internals this project relies on, in one place: creating a run with its code location's
origin and executing it in this process.

Dagster's public API has no such call: `execute_in_process` makes a run with no code-location origin (it is
missing from the job's Runs tab and the UI cannot re-execute it), and `dagster job launch` hands the run to
a run launcher (another process). `saas-metrics run` does what `dagster job launch` does up to the launch,
then executes here. These modules are private (`dagster._core`, `dagster._utils`) and may change in any
minor release: pyproject.toml pins Dagster's minor version, and tests/test_dagster_internals.py checks
every name and parameter used here against the installed Dagster, so an upgrade that changes one fails
there, naming it, rather than in a refresh.
"""

from __future__ import annotations

import sys


def create_run(instance, job_name: str, run_config: dict, tags: dict, module_name: str, working_directory: str):
    """A NOT_STARTED run of `job_name` with the origin of the code location `module_name` loads (what `dagster
    job launch` creates), and the reconstructable job to execute it with."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._utils.hosted_user_process import recon_job_from_origin

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable, module_name=module_name, working_directory=working_directory
        ),
        location_name=module_name,
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


def execute_run(recon_job, dagster_run, instance):
    """Execute a created run in this process; its result (failures are in it, not raised)."""
    from dagster._core.execution.api import execute_run as dagster_execute_run

    return dagster_execute_run(recon_job, dagster_run, instance, raise_on_error=False)


# What the functions above call, by module: tests/test_dagster_internals.py checks that each exists and
# takes the parameters passed to it.
USED = {
    "dagster._core.remote_origin": {"InProcessCodeLocationOrigin": ["loadable_target_origin", "location_name"]},
    "dagster._core.types.loadable_target_origin": {
        "LoadableTargetOrigin": ["executable_path", "module_name", "working_directory"]
    },
    "dagster._utils.hosted_user_process": {"recon_job_from_origin": ["origin"]},
    "dagster._core.execution.api": {"execute_run": ["job", "dagster_run", "instance", "raise_on_error"]},
}
# the instance's and the code location's methods create_run calls, with the keywords it passes
INSTANCE_CREATE_RUN = [
    "job_name",
    "run_id",
    "run_config",
    "resolved_op_selection",
    "step_keys_to_execute",
    "op_selection",
    "status",
    "root_run_id",
    "parent_run_id",
    "tags",
    "job_snapshot",
    "execution_plan_snapshot",
    "parent_job_snapshot",
    "remote_job_origin",
    "job_code_origin",
    "asset_selection",
    "asset_check_selection",
    "asset_graph",
]
LOCATION_GET_EXECUTION_PLAN = ["remote_job", "run_config", "step_keys_to_execute", "known_state", "instance"]
