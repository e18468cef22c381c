"""The Dagster Definitions load, with every asset, check, job and schedule wired as designed."""

from __future__ import annotations

import ast

import dagster as dg
import pytest

STRIPE_TABLES = {
    "customers",
    "products",
    "prices",
    "plans",
    "coupons",
    "subscriptions",
    "subscription_items",
    "invoices",
    "invoice_lines",
    "credit_notes",
    "invoiceitems",
    "events",
}
MRR_MARTS = {
    "mrr_movements",
    "customer_mrr_monthly",
    "mrr_monthly",
    "mrr_by_plan",
    "customer_mrr_current",
    "usage_revenue_monthly",
}


@pytest.fixture(scope="module")
def repo():
    from orchestration.definitions import defs

    return defs.get_repository_def()


def test_every_stripe_table_is_an_ingestion_asset(repo):
    keys = {key.path[1] for key in repo.asset_graph.get_all_asset_keys() if key.path[0] == "stripe"}
    assert keys == STRIPE_TABLES
    for table in STRIPE_TABLES:
        assert repo.asset_graph.get(dg.AssetKey(["stripe", table])).group_name == "ingestion"


def test_lineage_runs_from_raw_through_staging_to_marts(repo):
    graph = repo.asset_graph
    staging = graph.get(dg.AssetKey(["staging", "stg_stripe__invoice_lines"]))
    assert dg.AssetKey(["stripe", "invoice_lines"]) in staging.parent_keys
    assert graph.get(dg.AssetKey(["stripe", "invoices"])).is_materializable
    movements = dg.AssetKey(["marts", "mrr_movements"])
    ancestors = set()
    frontier = [movements]
    while frontier:
        key = frontier.pop()
        for parent in graph.get(key).parent_keys:
            if parent not in ancestors:
                ancestors.add(parent)
                frontier.append(parent)
    assert dg.AssetKey(["stripe", "invoice_lines"]) in ancestors
    assert dg.AssetKey(["stripe", "subscriptions"]) in ancestors


def test_marts_are_grouped_and_described(repo):
    for mart in MRR_MARTS:
        node = repo.asset_graph.get(dg.AssetKey(["marts", mart]))
        assert node.group_name == "mrr", mart
        assert node.description, f"{mart} has no description"


def test_every_asset_is_in_one_of_the_groups(repo):
    groups = {repo.asset_graph.get(key).group_name for key in repo.asset_graph.get_all_asset_keys()}
    assert groups == {
        "ingestion",
        "staging",
        "billing",
        "mrr",
        "retention",
        "product",
        "growth",
        "finance",
        "predictions",
        "publication",
        "reports",
    }


def test_jobs_and_schedule(repo):
    jobs = {job.name for job in repo.get_all_jobs()}
    assert {"refresh_job", "transform_job"} <= jobs
    schedule = repo.get_schedule_def("nightly_refresh_schedule")
    assert schedule.cron_schedule == "0 0 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == "refresh_job"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    transform = repo.get_job("transform_job")
    assert not any(key.path[0] == "stripe" for key in transform.asset_layer.executable_asset_keys)


def test_dbt_tests_are_asset_checks(repo):
    checks = {(key.asset_key.path[-1], key.name) for key in repo.asset_graph.asset_check_keys}
    # the blocking waterfall identity, the movement chain, and key tests
    assert ("mrr_monthly", "assert_mrr_waterfall_balances") in checks
    assert ("mrr_movements", "assert_mrr_movements_chain") in checks
    assert ("mrr_movements", "unique_combination_of_columns_mrr_movements_customer_id__movement_date") in checks
    assert ("customer_mrr_current", "unique_customer_mrr_current_customer_id") in checks


RETENTION_MARTS = {
    "cohort_retention",
    "saas_kpis_monthly",
    "customer_lifetime",
    "revenue_concentration",
    "trial_conversion",
}


def test_finance_files_are_ingestion_assets_feeding_the_kpis(repo):
    graph = repo.asset_graph
    for table in ("marketing_spend", "gross_margin", "pnl"):
        key = dg.AssetKey(["finance", table])
        assert graph.get(key).group_name == "ingestion"
        assert key in graph.get(dg.AssetKey(["staging", f"stg_finance__{table}"])).parent_keys
    kpis = graph.get(dg.AssetKey(["marts", "saas_kpis_monthly"]))
    assert dg.AssetKey(["staging", "stg_finance__marketing_spend"]) in kpis.parent_keys


def test_retention_marts_are_grouped_and_described(repo):
    for mart in RETENTION_MARTS:
        node = repo.asset_graph.get(dg.AssetKey(["marts", mart]))
        assert node.group_name == "retention", mart
        assert node.description, mart


PRODUCT_MARTS = {"account_engagement_weekly", "account_health", "activation", "feature_adoption", "churn_risk"}


def test_product_events_feed_the_product_group(repo):
    graph = repo.asset_graph
    for table in ("events", "account_mapping"):
        node = graph.get(dg.AssetKey(["product", table]))
        assert node.group_name == "ingestion" and node.description
    assert dg.AssetKey(["product", "events"]) in graph.get(dg.AssetKey(["staging", "stg_product__events"])).parent_keys
    for mart in PRODUCT_MARTS:
        node = graph.get(dg.AssetKey(["marts", mart]))
        assert node.group_name == "product", mart
        assert node.description, mart
    assert graph.get(dg.AssetKey(["intermediate", "int_product_user_days"])).group_name == "product"


def test_every_check_says_what_it_asserts(repo):
    graph = repo.asset_graph
    descriptions = {key.name: graph.get_check_spec(key).description for key in graph.asset_check_keys}
    assert all(descriptions.values()), [name for name, text in descriptions.items() if not text]
    assert descriptions["unique_mrr_monthly_month"] == "month is unique"
    assert descriptions["assert_mrr_waterfall_balances"].startswith("Blocking: every month's waterfall adds up")
    assert descriptions["unique_combination_of_columns_int_product_user_days_account_id__user_id__activity_date"] == (
        "(account_id, user_id, activity_date) is unique (rows where activity_date >= current_date - 35)"
    )


def test_prediction_assets_run_after_the_marts_they_read(repo):
    graph = repo.asset_graph
    forecast = graph.get(dg.AssetKey(["marts", "mrr_forecast"]))
    assert forecast.group_name == "predictions"
    assert dg.AssetKey(["marts", "mrr_monthly"]) in forecast.parent_keys
    assert dg.AssetKey(["marts", "customer_mrr_current"]) in forecast.parent_keys
    # the trials ending come from a dbt model on the billing contract, not from Stripe's staging
    assert dg.AssetKey(["intermediate", "int_trials_ending"]) in forecast.parent_keys
    assert not [key for key in forecast.parent_keys if key.path[0] == "staging"]
    assert (
        dg.AssetKey(["marts", "mrr_monthly"]) in graph.get(dg.AssetKey(["marts", "mrr_forecast_backtest"])).parent_keys
    )
    refresh = repo.get_job("refresh_job")
    assert dg.AssetKey(["marts", "mrr_forecast"]) in refresh.asset_layer.executable_asset_keys


def test_every_refresh_publishes_after_its_python_marts_and_reports_after_the_publication(repo):
    """Issue 31.1: the marts Python writes are published with the dbt marts, in one transaction."""
    publication = dg.AssetKey(["ops", "marts_publication"])
    node = repo.asset_graph.get(publication)
    assert node.group_name == "publication" and node.description
    python_marts = ("mrr_forecast", "mrr_forecast_backtest", "churn_predictions", "churn_model_evaluations")
    assert node.parent_keys == {dg.AssetKey(["marts", name]) for name in python_marts}
    assert publication in repo.asset_graph.get(dg.AssetKey(["reports", "metrics_report"])).parent_keys
    for job in ("refresh_job", "transform_job"):
        assert publication in repo.get_job(job).asset_layer.executable_asset_keys


def test_report_is_built_after_the_marts_it_reads_in_every_refresh(repo):
    node = repo.asset_graph.get(dg.AssetKey(["reports", "metrics_report"]))
    assert node.group_name == "reports" and node.description
    assert {dg.AssetKey(["marts", m]) for m in ("mrr_monthly", "saas_kpis_monthly", "churn_risk")} <= node.parent_keys
    for job in ("refresh_job", "transform_job"):
        assert dg.AssetKey(["reports", "metrics_report"]) in repo.get_job(job).asset_layer.executable_asset_keys


def test_a_failed_load_is_retried_60_s_then_120_s_later():
    """Issue 31.3: the README said 60 s then 120 s; Dagster's exponential backoff waited 60 s then 180 s."""
    from orchestration.defs.ingestion import finance_assets, product_assets, stripe_assets

    for assets in (stripe_assets, finance_assets, product_assets):
        policy = assets.op.retry_policy
        assert policy.max_retries == 2
        assert [policy.calculate_delay(retry) for retry in (1, 2)] == [60, 120]


def test_every_asset_key_has_a_prefix(repo):
    # issue 17: the subscriptions snapshot was the one bare key (["subscriptions_snapshot"])
    bare = [key for key in repo.asset_graph.get_all_asset_keys() if len(key.path) < 2]
    assert bare == []
    assert repo.asset_graph.get(dg.AssetKey(["snapshots", "subscriptions_snapshot"])).group_name == "mrr"


def test_only_the_schedule_tags_runs_nightly(repo):
    # issue 17: every refresh carried saas_metrics/refresh=nightly, CLI and UI runs included
    for name in ("refresh_job", "transform_job"):
        assert repo.get_job(name).tags["saas_metrics/refresh"] == "manual"
    schedule = repo.get_schedule_def("nightly_refresh_schedule")
    assert schedule.tags["saas_metrics/refresh"] == "nightly"
    intraday = repo.get_schedule_def("intraday_refresh_schedule")
    assert intraday.tags["saas_metrics/refresh"] == "intraday"
    # every 15 minutes but midnight's, the nightly's; off until someone switches it on
    assert intraday.cron_schedule == ["15,30,45 0 * * *", "*/15 1-23 * * *"]
    assert intraday.default_status == dg.DefaultScheduleStatus.STOPPED
    assert intraday.job_name == "refresh_job"


def test_refreshes_run_in_one_process_and_dead_runs_are_swept(repo):
    # the refresh lock is held by the process running the whole run (saas_metrics/runs.py)
    for name in ("refresh_job", "transform_job"):
        assert repo.get_job(name).executor_def.name == "in_process"
    sensor = repo.get_sensor_def("dead_refresh_runs_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_the_library_imports_nothing_from_orchestration():
    """saas_metrics/ is the library under the Dagster code and the CLI (orchestration/): no module of it
    imports orchestration, at its top or inside a function."""
    from pathlib import Path

    import saas_metrics

    offenders = []
    for path in Path(saas_metrics.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] == "orchestration"]
    assert offenders == []


def test_dbt_parse_is_skipped_when_nothing_it_reads_changed(monkeypatch):
    # the nightly starts with prepare_dbt(): a second call with the same project and environment does
    # not parse again (the manifest stays as it was); a variable the project reads makes it parse
    from saas_metrics import runtime
    from saas_metrics.config import DBT_PROJECT_DIR

    manifest = DBT_PROJECT_DIR / "target" / "manifest.json"
    runtime.prepare_dbt()
    parsed_at = manifest.stat().st_mtime_ns
    runtime.prepare_dbt()
    assert manifest.stat().st_mtime_ns == parsed_at
    before = runtime.dbt_project_fingerprint()
    monkeypatch.setenv("SAAS_METRICS_PG_PASSWORD", "not part of the manifest")
    assert runtime.dbt_project_fingerprint() == before
    monkeypatch.setenv("SAAS_METRICS_ACCOUNT_METADATA_KEY", "workspace_id")
    assert runtime.dbt_project_fingerprint() != before
    runtime.prepare_dbt()
    assert manifest.stat().st_mtime_ns != parsed_at
    monkeypatch.undo()
    runtime.prepare_dbt()  # the manifest of the environment the other tests run in


def _environment_reads(tree) -> list[int]:
    """Lines reading os.environ or os.getenv: a get, a subscript read, an iteration, `in`, `**os.environ`;
    writes for a subprocess (`os.environ[name] = ...`, update, pop, setdefault) are not reads."""
    writes = {"update", "pop", "setdefault"}
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            if node.attr == "getenv":
                lines.append(node.lineno)
            elif node.attr == "environ":
                parent = parents.get(node)
                if isinstance(parent, ast.Attribute) and parent.attr in writes:
                    continue
                if isinstance(parent, ast.Subscript) and isinstance(parent.ctx, ast.Store | ast.Del):
                    continue
                lines.append(node.lineno)
    return sorted(lines)


def test_one_module_reads_the_environment():
    """saas_metrics/config.py reads the environment; every other module of the product (saas_metrics/,
    orchestration/, ingestion/) asks it (STYLE.md "One module reads the environment")."""
    from saas_metrics.config import PROJECT_DIR

    offenders = []
    for folder in ("saas_metrics", "orchestration", "ingestion"):
        for path in sorted((PROJECT_DIR / folder).rglob("*.py")):
            if path == PROJECT_DIR / "saas_metrics" / "config.py":
                continue
            lines = _environment_reads(ast.parse(path.read_text()))
            offenders += [f"{path.relative_to(PROJECT_DIR)}:{line}" for line in lines]
    assert offenders == []
    # and the check sees a read when there is one
    assert _environment_reads(ast.parse("import os\nx = os.environ.get('A')\ny = {**os.environ}\n")) == [2, 3]
    assert _environment_reads(ast.parse("import os\nos.environ['A'] = '1'\nos.environ.pop('A')\n")) == []


def test_importing_the_definitions_modules_builds_nothing():
    """Importing a module of orchestration/defs parses no dbt project (the Definitions do, when built:
    orchestration/definitions.py) - here in a process where a dbt parse would fail loudly."""
    import subprocess
    import sys

    code = (
        "from saas_metrics import runtime\n"
        "def refuse(*args, **kwargs):\n"
        "    raise SystemExit('dbt parse')\n"
        "runtime.prepare_dbt = refuse\n"
        "import orchestration.defs.resources, orchestration.defs.dbt, orchestration.defs.lake\n"
        "import orchestration.defs.checks, orchestration.defs.jobs, orchestration.defs.churn\n"
        "from orchestration.defs import resources\n"
        "resources.dagster_dev_without_parsed_dbt = lambda: True\n"
        "try:\n"
        "    resources.dbt_manifest_path()\n"
        "except SystemExit as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # building the dbt assets does parse (a plain `dagster dev`): the refusal is reached there, not on import
    assert result.stdout.strip() == "dbt parse"


def test_the_warehouse_resource_takes_its_url_as_a_field(monkeypatch):
    from orchestration.defs.resources import WarehouseResource
    from saas_metrics import runtime

    monkeypatch.setattr(runtime, "warehouse_url", lambda: "postgresql://from-the-settings/db")
    assert WarehouseResource().url() == "postgresql://from-the-settings/db"
    given = WarehouseResource(database_url="postgresql://given@127.0.0.1:5432/warehouse")
    assert given.url() == "postgresql://given@127.0.0.1:5432/warehouse"
