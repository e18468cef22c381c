"""The single Dagster entry point (`dagster dev -m orchestration.definitions`)."""

import dagster as dg

from orchestration.defs.dbt import dbt_models
from orchestration.defs.ingestion import finance_assets, stripe_assets
from orchestration.defs.resources import build_resources
from orchestration.defs.schedules import nightly_refresh_schedule, refresh_job, transform_job

defs = dg.Definitions(
    assets=[stripe_assets, finance_assets, dbt_models],
    jobs=[refresh_job, transform_job],
    schedules=[nightly_refresh_schedule],
    resources=build_resources(),
)
