"""dbt models as Dagster assets; dbt tests become asset checks (blocking where they fail a build)."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from ingestion.finance import ensure_finance_tables
from ingestion.product import ensure_product_tables
from orchestration.defs.resources import WarehouseResource, dbt_project

LAYER_GROUPS = {"staging": "staging"}


class SaasMetricsDbtTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        """staging models -> 'staging'; intermediate and marts -> their area ('mrr', 'retention', ...)."""
        fqn = dbt_resource_props.get("fqn", [])
        if dbt_resource_props.get("resource_type") == "seed":
            return "mrr"
        if len(fqn) >= 3:
            layer, area = fqn[1], fqn[2]
            return LAYER_GROUPS.get(layer, area)
        return "staging"


translator = SaasMetricsDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    name="dbt_models",
    op_tags={"saas_metrics/step": "transform"},
)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
    # sources a run did not load (no finance files, no product events, transform_job) exist empty
    url = warehouse.url()
    ensure_finance_tables(url)
    ensure_product_tables(url)
    yield from dbt.cli(["build"], context=context).stream()
