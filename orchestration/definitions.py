"""The single Dagster entry point (`dagster dev -m orchestration.definitions`). One module per kind under
defs/: assets (ingestion, dbt, ml, report), checks, jobs, schedules, sensors, resources."""

import dagster as dg

from orchestration.defs.checks import asset_checks
from orchestration.defs.dbt import dbt_models
from orchestration.defs.ingestion import finance_assets, product_assets, stripe_assets
from orchestration.defs.jobs import jobs
from orchestration.defs.ml import ml_assets
from orchestration.defs.report import report
from orchestration.defs.resources import build_resources
from orchestration.defs.schedules import schedules
from orchestration.defs.sensors import sensors

defs = dg.Definitions(
    assets=[stripe_assets, finance_assets, product_assets, dbt_models, *ml_assets, report],
    asset_checks=asset_checks,
    jobs=jobs,
    schedules=schedules,
    sensors=sensors,
    resources=build_resources(),
)
