"""Lake mode's assets (README "Lake mode"), in the same graph as the rest, when SAAS_METRICS_LAKE_URL is set:

    product/events (the lake) -> lake/staging/stg_product__events -> lake/intermediate/int_product_*_days
    (dbt on Spark; its tests are checks on these assets) -> intermediate/int_product_*_days (published into
    PostgreSQL; a check compares the rows) -> every model downstream (the PostgreSQL dbt build, which leaves
    out the models tagged spark).

One refresh runs it all in that order. A cluster that does not answer fails the Spark build at once, in one
line naming SAAS_METRICS_SPARK_URL; the PostgreSQL build is then skipped and the marts keep their last state.
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets
from dagster_dlt import DagsterDltResource
from dlt.sources import DltSource

from ingestion.cleaning import CleanedObjects
from ingestion.product import ProductEventsError, product_source
from ingestion.product.lake import ensure_events_table, lake_events, lake_pipeline
from orchestration.defs.dbt import DbtBuildConfig, SaasMetricsDbtTranslator, dbt_models_asset, stream_build
from orchestration.defs.ingestion import (
    INGEST_RETRY_POLICY,
    PRODUCT,
    PRODUCT_DESCRIPTIONS,
    load,
    materializations,
)
from orchestration.defs.resources import SettingsResource, WarehouseResource, dbt_manifest_path, dbt_project
from saas_metrics.lake import spark
from saas_metrics.lake.publish import ROLLUPS, publish_rollups

SPARK_MODELS = "tag:spark"  # dbt_project.yml: the product models that scan events
ROLLUP_KEYS = {name: dg.AssetKey(["intermediate", name]) for name in ROLLUPS}
LAKE_OPS = ("lake_dbt_models", "publish_product_rollups")  # ops that take DbtBuildConfig (orchestration/run.py)


class LakeDbtTranslator(SaasMetricsDbtTranslator):
    """The Spark build's models as lake/<schema>/<model> in the lake group (their PostgreSQL relations are the
    published assets); sources keep their keys (product/events is the lake's load)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        key = super().get_asset_key(dbt_resource_props)
        return key.with_prefix("lake") if dbt_resource_props.get("resource_type") == "model" else key

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "lake"


def _unavailable(exc: spark.SparkUnavailable) -> dg.Failure:
    return dg.Failure(str(exc), allow_retries=False)


def lake_assets() -> list:
    """The assets of lake mode: they replace product_assets and dbt_models in the Definitions."""
    specs = [
        dg.AssetSpec(
            key=["product", "events"],
            group_name="ingestion",
            description=PRODUCT_DESCRIPTIONS["events"]
            + " Lake mode: into SAAS_METRICS_LAKE_URL, partitioned by event_date.",
            kinds={"dlt", "deltalake"},
        ),
        PRODUCT.spec("account_mapping"),
    ]

    @dg.multi_asset(
        name="product", specs=specs, op_tags={"saas_metrics/step": "ingest"}, retry_policy=INGEST_RETRY_POLICY
    )
    def lake_product_assets(
        context: dg.AssetExecutionContext,
        dlt: DagsterDltResource,
        warehouse: WarehouseResource,
        runtime_settings: SettingsResource,
    ):
        """Product events into the lake (dlt's filesystem destination); the account mapping into PostgreSQL."""
        settings = runtime_settings.get()
        product, lake = settings.product, settings.lake
        cleaned = CleanedObjects()

        def source() -> DltSource:
            return product_source(
                database_url=product.database_url,
                table=product.table,
                columns=product.columns,
                events_dir=str(product.events_dir) if product.events_dir else None,
                file_columns=product.file_columns,
                late_window_hours=product.late_window_hours,
                mapping_csv=str(product.mapping_csv) if product.mapping_csv else None,
                cleaned=cleaned,
            )

        results: dict[dg.AssetKey, dg.MaterializeResult] = {}
        if product.configured:
            pipeline = lake_pipeline(lake.dlt_bucket_url, str(settings.dlt_pipelines_dir))
            results |= load(context, dlt, PRODUCT, lambda: lake_events(source()), ProductEventsError, pipeline)
            events = results.get(dg.AssetKey(["product", "events"]))
            rows = (events.metadata or {}).get("rows_loaded") if events else None
            context.log.info(f"product events written to the lake: {rows.value if rows else 0} rows")
        else:
            context.log.info(
                "no product events configured (SAAS_METRICS_EVENTS_DB_URL, SAAS_METRICS_EVENTS_DIR): "
                "engagement marts stay empty"
            )
        if ensure_events_table(lake.dlt_bucket_url):
            context.log.info(f"created the lake's events table empty: {lake.events_path}")
        if product.mapping_csv:
            results |= load(
                context, dlt, PRODUCT, lambda: source().with_resources("account_mapping"), ProductEventsError
            )

        def lake_metadata(table: str) -> dict:
            if table != "events":
                return {}
            return {"lake": lake.events_path, "read_as": lake.format, "events_with_nul_removed": cleaned.count("event")}

        yield from materializations(context, warehouse.url(), PRODUCT, results, lake_metadata)

    translator = LakeDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))

    @dbt_assets(
        manifest=dbt_manifest_path(),
        project=dbt_project,
        select=SPARK_MODELS,
        dagster_dbt_translator=translator,
        name="lake_dbt_models",
        op_tags={"saas_metrics/step": "transform"},
    )
    def lake_dbt_models(
        context: dg.AssetExecutionContext,
        config: DbtBuildConfig,
        dbt: DbtCliResource,
        runtime_settings: SettingsResource,
    ):
        """dbt build --target spark: the staging view and the daily rollups on the cluster, and their tests."""
        import os

        lake = runtime_settings.get().lake
        try:
            with spark.client(lake) as client:
                spark.register_events(client, lake)
        except spark.SparkUnavailable as exc:
            raise _unavailable(exc) from None
        os.environ.update(spark.dbt_environment(lake))
        args = ["build", "--target", "spark"] + (["--full-refresh"] if config.full_refresh else [])
        yield from stream_build(context, dbt, args, "lake_dbt_models")

    publish_specs = [
        dg.AssetSpec(
            key=key,
            deps=[key.with_prefix("lake")],
            group_name="product",
            description=f"{name}, built on Spark and published into PostgreSQL (the days the build rewrote).",
            kinds={"spark", "postgres"},
        )
        for name, key in ROLLUP_KEYS.items()
    ]
    check_specs = [
        dg.AssetCheckSpec(
            "rows_equal_spark",
            asset=key,
            description="The published table has as many rows as Spark's, and the same newest load.",
            blocking=True,
        )
        for key in ROLLUP_KEYS.values()
    ]

    @dg.multi_asset(
        name="publish_product_rollups",
        specs=publish_specs,
        check_specs=check_specs,
        op_tags={"saas_metrics/step": "transform"},
    )
    def publish_product_rollups(
        context: dg.AssetExecutionContext,
        config: DbtBuildConfig,
        warehouse: WarehouseResource,
        runtime_settings: SettingsResource,
    ):
        """The days the Spark build rewrote, copied into PostgreSQL (saas_metrics/lake/publish.py)."""
        import psycopg2

        lake = runtime_settings.get().lake
        url = warehouse.url()
        try:
            with spark.client(lake) as client:
                published = publish_rollups(client, url, full=config.full_refresh, on_message=context.log.info)
                totals = {
                    table: client.arrow(f"select count(*) as n, max(max_load_id) as newest from intermediate.{table}")
                    for table in ROLLUPS
                }
        except spark.SparkUnavailable as exc:
            raise _unavailable(exc) from None
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            for result in published:
                key = ROLLUP_KEYS[result.table]
                yield dg.MaterializeResult(
                    asset_key=key,
                    metadata={"days_replaced": result.days, "rows_written": result.rows, "whole_table": result.full},
                )
                cur.execute(f"select count(*), max(max_load_id) from intermediate.{result.table}")
                rows, newest = cur.fetchone()
                spark_rows = totals[result.table].column("n")[0].as_py()
                spark_newest = totals[result.table].column("newest")[0].as_py()
                yield dg.AssetCheckResult(
                    asset_key=key,
                    check_name="rows_equal_spark",
                    passed=(rows, newest) == (spark_rows, spark_newest),
                    metadata={"postgres_rows": rows, "spark_rows": spark_rows, "newest_load": str(newest)},
                )

    return [lake_product_assets, lake_dbt_models, publish_product_rollups, dbt_models_asset(exclude=SPARK_MODELS)]


def lake_run_config(full_refresh: bool) -> dict:
    """The lake ops' config in a refresh's run config (orchestration/run.py)."""
    return {name: {"config": {"full_refresh": full_refresh}} for name in LAKE_OPS}
