"""The single Dagster entry point (`dagster dev -m orchestration.definitions`). One module per kind under
defs/: assets (ingestion, dbt, ml, publish, report; lake mode's in lake.py), checks, jobs, schedules, sensors,
resources."""

import dagster as dg

from orchestration.defs.checks import asset_checks
from orchestration.defs.churn import churn_model
from orchestration.defs.dbt import dbt_models_asset
from orchestration.defs.forecast import mrr_forecast
from orchestration.defs.ingestion import finance_assets, product_assets, stripe_assets
from orchestration.defs.jobs import jobs
from orchestration.defs.publish import MONTH_CLOSE_TABLES, marts_publication
from orchestration.defs.report import report
from orchestration.defs.resources import build_resources
from orchestration.defs.schedules import schedules
from orchestration.defs.sensors import sensors
from saas_metrics import runtime


def build_definitions(lake_mode: bool) -> dg.Definitions:
    """Everything; in lake mode (SAAS_METRICS_LAKE_URL) product events go through the lake and Spark
    (orchestration/defs/lake.py) instead of product_assets and the PostgreSQL build of the product rollups."""
    if lake_mode:
        from orchestration.defs.lake import lake_assets

        product_and_dbt = lake_assets()
    else:
        product_and_dbt = [product_assets, dbt_models_asset()]
    return dg.Definitions(
        assets=[
            stripe_assets,
            finance_assets,
            *product_and_dbt,
            mrr_forecast,
            churn_model,
            marts_publication,
            report,
            *MONTH_CLOSE_TABLES,
        ],
        asset_checks=asset_checks,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources=build_resources(),
    )


defs = build_definitions(runtime.settings().lake.enabled)
