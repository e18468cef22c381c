"""Resources: the warehouse connection, Stripe settings, dlt and dbt."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from functools import cached_property
from importlib.metadata import version
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject
from dagster_dlt import DagsterDltResource
from packaging.version import Version
from pydantic import Field

from saas_metrics import runs, runtime
from saas_metrics.config import DBT_PROJECT_DIR, dagster_dev_without_parsed_dbt

DBT_EXECUTABLE = Path(sys.executable).parent / "dbt"

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def dbt_manifest_path() -> Path:
    """The dbt manifest the dbt assets are built from, parsed first when there is none; a plain `dagster dev`
    parses again (with this environment's dbt, which need not be on PATH: dagster-dbt's own prepare_if_dev
    looks for `dbt` on PATH only), `saas-metrics ui` and the other entry points have parsed already.
    Called when the Definitions are built (orchestration/definitions.py), never on import."""
    if dagster_dev_without_parsed_dbt() or not dbt_project.manifest_path.exists():
        runtime.prepare_dbt()
    return dbt_project.manifest_path


class WarehouseResource(dg.ConfigurableResource):
    """Where raw data lands and marts are built: `database_url` when the resource is given one (in the
    Definitions or a run's resource config: `dg.EnvVar("...")`, so that Dagster never shows the password),
    else the settings' DATABASE_URL, else the embedded PostgreSQL (started if it is not running)."""

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL of the warehouse; unset: DATABASE_URL, else the embedded PostgreSQL",
    )

    def url(self) -> str:
        return self.database_url or runtime.warehouse_url()

    @contextlib.contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[WarehouseResource]:
        """Every run keeps its storage connections open (runs.keep_storage_connections: a run the schedule
        or the UI launched stored each event on a connection of its own). A refresh run (refresh_job,
        transform_job: in-process, so this runs once per run) holds the
        refresh lock for its whole duration: a second refresh waits, whoever started it; and a refresh
        left STARTED by a dead process is marked failed (saas_metrics/runs.py)."""
        if context.instance is not None:
            runs.keep_storage_connections(context.instance)  # before the steps store their events
        run = context.dagster_run
        if run is None or runs.REFRESH_TAG not in run.tags:
            yield self
            return
        url = self.url()
        log = context.log

        def waiting(message: str) -> None:
            if log is not None:
                log.info(message)

        with runs.hold_refresh(url, run.run_id, wait=True, on_wait=waiting):
            if context.instance is not None:
                for dead in runs.mark_dead_refreshes(context.instance, url, exclude_run_id=run.run_id):
                    waiting(f"marked run {dead.run_id[:8]} of {dead.job_name} failed: its process is gone")
            yield self


class ProjectDbtCliResource(DbtCliResource):
    """dagster-dbt's resource, for the dbt installed beside this Python (DBT_EXECUTABLE): its version is
    dbt-core's, read from the package metadata, where dagster-dbt would run `dbt --version` before every
    build (a Python start and dbt's imports: 1.5 s of each nightly)."""

    @cached_property
    def _cli_version(self) -> Version:
        if Path(self.dbt_executable) != DBT_EXECUTABLE:
            return super()._cli_version
        return Version(version("dbt-core"))


class SettingsResource(dg.ConfigurableResource):
    """The settings saas_metrics.config read from the environment (Stripe, finance files)."""

    def get(self):
        return runtime.settings()


def build_resources() -> dict:
    return {
        "warehouse": WarehouseResource(),
        "runtime_settings": SettingsResource(),
        "dlt": DagsterDltResource(),
        # the dbt installed beside this Python, whether or not its bin directory is on PATH
        "dbt": ProjectDbtCliResource(
            project_dir=dbt_project, profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=str(DBT_EXECUTABLE)
        ),
    }
