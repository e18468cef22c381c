"""dbt models as Dagster assets; dbt tests become asset checks (blocking where they fail a build)."""

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from ingestion import finance, product
from ingestion.raw_tables import ensure_tables
from orchestration.defs.publish import publishing_run
from orchestration.defs.resources import WarehouseResource, dbt_manifest_path, dbt_project
from saas_metrics.config import PUBLISH_RUN_ENV

LAYER_GROUPS = {"staging": "staging", "billing": "billing"}


class SaasMetricsDbtTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        """staging models -> 'staging'; the billing contract (models/billing) -> 'billing'; intermediate and
        marts -> their area ('mrr', 'retention', ...);
        the fx_rates seed and the subscriptions snapshot belong to the MRR engine -> 'mrr'."""
        fqn = dbt_resource_props.get("fqn", [])
        if dbt_resource_props.get("resource_type") in ("seed", "snapshot"):
            return "mrr"
        if len(fqn) >= 3:
            layer, area = fqn[1], fqn[2]
            return LAYER_GROUPS.get(layer, area)
        return "staging"

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        """The subscriptions snapshot gets its schema as a key prefix, like every other asset
        (snapshots/subscriptions_snapshot, not a bare name)."""
        key = super().get_asset_key(dbt_resource_props)
        if dbt_resource_props.get("resource_type") == "snapshot" and len(key.path) == 1:
            schema = (dbt_resource_props.get("config") or {}).get("target_schema") or dbt_resource_props.get("schema")
            return dg.AssetKey([schema or "snapshots", *key.path])
        return key

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project) -> dg.AssetCheckSpec | None:
        """dbt tests as checks, described in the UI: a generic test by what it asserts, a singular test
        by the comment that opens its SQL."""
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        return dg.AssetCheckSpec(
            name=spec.name,
            asset=spec.asset_key,
            description=describe_test(manifest["nodes"][unique_id]),
            additional_deps=spec.additional_deps,
            metadata=spec.metadata,
            blocking=spec.blocking,
        )


def describe_test(test: Mapping[str, Any]) -> str:
    """One line saying what a dbt test asserts."""
    if test.get("description"):
        return test["description"]
    generic = test.get("test_metadata") or {}
    if not generic:  # singular: its opening comment
        lines = []
        for line in test.get("raw_code", "").splitlines():
            if not line.startswith("--"):
                break
            lines.append(line.removeprefix("--").strip())
        return " ".join(lines) or f"dbt test {test['name']}"
    kwargs = generic.get("kwargs", {})
    column = kwargs.get("column_name")
    name = generic.get("name")
    if name == "not_null":
        text = f"{column} is never null"
    elif name == "unique":
        text = f"{column} is unique"
    elif name == "unique_combination_of_columns":
        text = f"({', '.join(kwargs.get('columns', []))}) is unique"
    elif name == "accepted_values":
        text = f"{column} is one of {', '.join(map(str, kwargs.get('values', [])))}"
    elif name == "relationships":
        target = str(kwargs.get("to", "")).removeprefix("ref('").removesuffix("')")
        text = f"every {column} exists in {target}.{kwargs.get('field')}"
    elif name == "accepted_range_0_100":
        text = f"{column} is between 0 and 100"
    else:
        text = f"dbt test {name}" + (f" on {column}" if column else "")
    where = (test.get("config") or {}).get("where")
    return text + (f" (rows where {where})" if where else "")


class DbtBuildConfig(dg.Config):
    """full_refresh rebuilds the incremental models (staged invoices and lines, product rollups) from
    scratch: after an upgrade of saas-metrics that changes how they are computed."""

    full_refresh: bool = False


translator = SaasMetricsDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def dbt_models_asset(exclude: str | None = None):
    """Every dbt model as an asset of one dbt build; lake mode leaves out the models Spark builds
    (`exclude="tag:spark"`: orchestration/defs/lake.py), which the build then reads as published. Built when
    the Definitions are (it reads the manifest, parsing the project when there is none)."""

    @dbt_assets(
        manifest=dbt_manifest_path(),
        project=dbt_project,
        dagster_dbt_translator=translator,
        name="dbt_models",
        op_tags={"saas_metrics/step": "transform"},
        exclude=exclude,
    )
    def dbt_models(
        context: dg.AssetExecutionContext, config: DbtBuildConfig, dbt: DbtCliResource, warehouse: WarehouseResource
    ):
        # sources a run did not load (no finance files, no product events, transform_job) exist empty
        url = warehouse.url()
        ensure_tables(url, finance.TABLES)
        ensure_tables(url, product.TABLES)
        # the dbt unit tests test the code, not the data: `make test` runs them (tests/test_dbt_unit_tests.py)
        args = ["build", "--exclude-resource-type", "unit_test"] + (["--full-refresh"] if config.full_refresh else [])
        # a refresh publishes the marts with what it writes after dbt, at once (orchestration/defs/publish.py)
        refresh = publishing_run(context)
        if refresh:
            os.environ[PUBLISH_RUN_ENV] = refresh
        try:
            yield from stream_build(context, dbt, args, "dbt_models")
        finally:
            os.environ.pop(PUBLISH_RUN_ENV, None)

    return dbt_models


def stream_build(context: dg.AssetExecutionContext, dbt: DbtCliResource, args: list[str], name: str):
    """Run one dbt build, its events streamed to Dagster; a failure is one line naming what failed."""
    invocation = dbt.cli(args, context=context)
    try:
        yield from invocation.stream()
    except DagsterDbtCliRuntimeError:
        # dagster-dbt's own message stops at "The dbt CLI process with command ...": say what failed
        try:
            run_results = invocation.get_artifact("run_results.json")
        except Exception:  # dbt died before writing it
            run_results = {}
        raise dg.Failure(description=dbt_failure_reason(run_results), allow_retries=False) from None
    finally:
        prune_invocation_targets(invocation.target_path.parent, keep=KEEP_DBT_INVOCATIONS, prefix=name)


# dbt's message when an incremental model's columns differ from its table's (on_schema_change: fail)
OUT_OF_SYNC = "schemas on this incremental model are out of sync"
UPGRADE_HINT = (
    ". Its table was built by an older version of saas-metrics, whose columns differ:"
    " run `saas-metrics run --full-refresh` once after upgrading"
)


def dbt_failure_reason(run_results: Mapping[str, Any]) -> str:
    """One line naming every test that failed and every model that errored in a dbt build."""
    failed_tests, errored, skipped = [], [], 0
    for result in run_results.get("results", []):
        status = result.get("status")
        unique_id = result.get("unique_id", "")
        name = unique_id.split(".")[2] if unique_id.count(".") >= 2 else unique_id
        if status == "skipped":
            skipped += 1
        elif status in ("fail", "error", "runtime error") and unique_id.startswith(("test.", "unit_test.")):
            failed_tests.append(name)
        elif status in ("error", "runtime error"):
            message = " ".join((result.get("message") or "").split())
            errored.append(f"{name} ({message})" if message else name)
    parts = []
    if failed_tests:
        parts.append(f"{len(failed_tests)} test(s) failed: {', '.join(failed_tests)}")
    if errored:
        parts.append(f"{len(errored)} model(s) errored: {', '.join(errored)}")
    if not parts:
        return "dbt build failed before it ran anything (see the dbt log under dbt_project/target)"
    reason = "dbt build failed: " + "; ".join(parts) + (f"; {skipped} skipped after them" if skipped else "")
    if any(OUT_OF_SYNC in line for line in errored):
        # an incremental table built by an older version, without the columns this one stages (README "With your
        # Stripe account")
        reason += UPGRADE_HINT
    return reason


# each dbt invocation writes its own target folder (manifest, run results, logs: ~7 MB at demo
# size); the latest few are kept for debugging, not one per night forever
KEEP_DBT_INVOCATIONS = 10


def prune_invocation_targets(target_root: Path, keep: int, prefix: str = "dbt_models") -> list[Path]:
    """Delete all but the `keep` newest `<prefix>-*` invocation folders under `target_root`."""
    folders = sorted(target_root.glob(f"{prefix}-*"), key=lambda f: f.stat().st_mtime, reverse=True)
    for folder in folders[keep:]:
        shutil.rmtree(folder, ignore_errors=True)
    return folders[keep:]
