"""The single Dagster entry point (`dagster dev -m orchestration.definitions`)."""

import dagster as dg

from orchestration.defs.alerts import sensors as alert_sensors
from orchestration.defs.alerts import weekly_summary_job, weekly_summary_schedule
from orchestration.defs.checks import asset_checks, freshness_job, freshness_schedule
from orchestration.defs.dbt import dbt_models
from orchestration.defs.ingestion import finance_assets, product_assets, stripe_assets
from orchestration.defs.ml import ml_assets
from orchestration.defs.report import report
from orchestration.defs.resources import build_resources
from orchestration.defs.runs import dead_refresh_runs_sensor
from orchestration.defs.schedules import nightly_refresh_schedule, refresh_job, transform_job

defs = dg.Definitions(
    assets=[stripe_assets, finance_assets, product_assets, dbt_models, *ml_assets, report],
    asset_checks=asset_checks,
    jobs=[refresh_job, transform_job, weekly_summary_job, freshness_job],
    schedules=[nightly_refresh_schedule, weekly_summary_schedule, freshness_schedule],
    sensors=[*alert_sensors, dead_refresh_runs_sensor],
    resources=build_resources(),
)
