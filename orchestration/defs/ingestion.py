"""dlt loads as Dagster assets. Each asset key equals the key dagster-dbt gives the matching
dbt source (["stripe", <table>]), so lineage runs raw -> staging -> marts in one graph."""

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, build_dlt_asset_specs
from dagster_dlt.translator import DltResourceTranslatorData

from ingestion.cleaning import CleanedObjects
from ingestion.finance import ensure_finance_tables, finance_source
from ingestion.product import ProductEventsError, ensure_product_tables, product_source
from ingestion.stripe import settings as stripe_settings
from ingestion.stripe import stripe_source
from ingestion.stripe.helpers import StripeAuthError, ensure_raw_tables
from orchestration.defs.resources import SettingsResource, WarehouseResource
from saas_metrics import runtime
from saas_metrics.config import RAW_FINANCE_SCHEMA, RAW_PRODUCT_SCHEMA, RAW_STRIPE_SCHEMA

STRIPE_DESCRIPTIONS = {
    "customers": "Stripe customers.",
    "products": "Stripe products.",
    "prices": "Stripe prices (current API).",
    "plans": "Stripe plans (legacy API; same ids as recurring prices).",
    "coupons": "Stripe coupons.",
    "subscriptions": "Every Stripe subscription, canceled ones included.",
    "invoices": "Every Stripe invoice (its lines are in stripe/invoice_lines).",
    "credit_notes": "Stripe credit notes.",
    "invoiceitems": "Stripe invoice items, pending and invoiced (deleted ones marked, from their events).",
    "events": "Stripe events of the last 30 days (used to find changed objects).",
}
# tables a resource fills besides its own: loaded in the same step, materialized with it
CHILD_TABLES = {
    "invoice_lines": "Every line of every Stripe invoice, past the 10 Stripe embeds (loaded with invoices).",
    "subscription_items": "Every item of every Stripe subscription, past the 10 Stripe embeds "
    "(loaded with subscriptions).",
}


class StripeTranslator(DagsterDltTranslator):
    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        name = data.resource.name
        return spec.replace_attributes(
            key=dg.AssetKey(["stripe", name]),
            group_name="ingestion",
            description=STRIPE_DESCRIPTIONS.get(name, f"Stripe {name}."),
            deps=[],
        )


class StripeLoadConfig(dg.Config):
    full_refresh: bool = False


def _pipeline(name: str, dataset: str) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=name,
        destination="postgres",
        dataset_name=dataset,
        pipelines_dir=str(runtime.settings().dlt_pipelines_dir),
        progress="log",
    )


def stripe_pipeline() -> dlt.Pipeline:
    return _pipeline("stripe", RAW_STRIPE_SCHEMA)


STRIPE_SPECS = [
    *build_dlt_asset_specs(
        # a placeholder key: the source is built again with the real settings at run time
        dlt_source=stripe_source(api_key="sk_definition_only"),
        dlt_pipeline=stripe_pipeline(),
        dagster_dlt_translator=StripeTranslator(),
    ),
    *[
        dg.AssetSpec(key=["stripe", table], group_name="ingestion", description=description, kinds={"dlt", "postgres"})
        for table, description in CHILD_TABLES.items()
    ],
]


# Requests already retry 429s, 5xx and dropped connections; a load that still fails (Stripe down for
# minutes) is retried (default twice, 60 s then 120 s later). A bad key is not: it will not get better.
INGEST_RETRY_POLICY = dg.RetryPolicy(
    max_retries=runtime.settings().ingest_retries,
    delay=runtime.settings().ingest_retry_delay,
    backoff=dg.Backoff.EXPONENTIAL,
)


def announce_retry(context: dg.AssetExecutionContext, what: str, exc: BaseException) -> None:
    """Say, before Dagster retries the step (INGEST_RETRY_POLICY), when and how often."""
    attempt = context.retry_number + 1  # this one
    retries = INGEST_RETRY_POLICY.max_retries
    if attempt > retries:
        return
    delay = INGEST_RETRY_POLICY.calculate_delay(attempt)
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    context.log.warning(f"{what} failed ({reason}); retrying in {delay:.0f} s, attempt {attempt + 1} of {retries + 1}")


def _not_retryable(exc: BaseException) -> StripeAuthError | None:
    return _cause(exc, StripeAuthError)


@dg.multi_asset(
    name="stripe",
    specs=STRIPE_SPECS,
    op_tags={"saas_metrics/step": "ingest"},
    retry_policy=INGEST_RETRY_POLICY,
)
def stripe_assets(
    context: dg.AssetExecutionContext,
    dlt: DagsterDltResource,
    warehouse: WarehouseResource,
    runtime_settings: SettingsResource,
    config: StripeLoadConfig,
):
    settings = runtime_settings.get()
    if not settings.stripe_configured:
        raise dg.Failure("STRIPE_API_KEY is not set: cannot load Stripe")
    url = warehouse.url()
    cleaned = CleanedObjects()
    source = stripe_source(
        api_key=settings.stripe_api_key,
        api_base=settings.stripe_api_base,
        full_refresh=config.full_refresh,
        max_rps=settings.stripe_max_rps,
        concurrency=settings.stripe_concurrency,
        cleaned=cleaned,
        timeout=settings.stripe_timeout,
    )
    try:
        results = list(
            dlt.run(
                context=context,
                dlt_source=source,
                dlt_pipeline=stripe_pipeline(),
                dagster_dlt_translator=StripeTranslator(),
                credentials=runtime.dlt_credentials(),
            )
        )
    except Exception as exc:
        auth = _not_retryable(exc)
        if auth is None:
            announce_retry(context, "the Stripe load", exc)
            raise
        raise dg.Failure(str(auth), allow_retries=False) from exc
    if cleaned.total():
        context.log.warning(
            "stored with NUL characters removed (PostgreSQL cannot store them): "
            + ", ".join(f"{n} {kind}" for kind, n in sorted(cleaned.counts().items()))
        )
    for result in results:
        table = result.asset_key.path[-1]
        yield result._replace(metadata={**(result.metadata or {}), **_nul_metadata(cleaned, table)})
    for table in CHILD_TABLES:
        yield dg.MaterializeResult(asset_key=["stripe", table], metadata=_nul_metadata(cleaned, table))
    created = ensure_raw_tables(url, RAW_STRIPE_SCHEMA)
    if created:
        context.log.info(f"created empty raw tables with nothing to load yet: {', '.join(created)}")


def _nul_metadata(cleaned: CleanedObjects, table: str) -> dict:
    """How many of this load's objects of a table were stored with NUL characters removed."""
    return {"objects_with_nul_removed": cleaned.count(stripe_settings.object_type_of(table))}


FINANCE_DESCRIPTIONS = {
    "marketing_spend": "Sales and marketing spend by month and channel (SAAS_METRICS_SPEND_CSV).",
    "gross_margin": "Gross margin by month (SAAS_METRICS_GROSS_MARGIN_CSV).",
    "pnl": "Monthly P&L: revenue, operating expenses, net burn (SAAS_METRICS_PNL_CSV; optional).",
}


class FinanceTranslator(DagsterDltTranslator):
    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        name = data.resource.name
        return spec.replace_attributes(
            key=dg.AssetKey(["finance", name]), group_name="ingestion", description=FINANCE_DESCRIPTIONS[name], deps=[]
        )


def finance_pipeline() -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name="finance",
        destination="postgres",
        dataset_name=RAW_FINANCE_SCHEMA,
        pipelines_dir=str(runtime.settings().dlt_pipelines_dir),
    )


@dg.multi_asset(
    name="finance",
    specs=build_dlt_asset_specs(
        dlt_source=finance_source(), dlt_pipeline=finance_pipeline(), dagster_dlt_translator=FinanceTranslator()
    ),
    op_tags={"saas_metrics/step": "ingest"},
)
def finance_assets(
    context: dg.AssetExecutionContext,
    dlt: DagsterDltResource,
    warehouse: WarehouseResource,
    runtime_settings: SettingsResource,
):
    settings = runtime_settings.get()
    url = warehouse.url()
    if not (settings.spend_csv or settings.gross_margin_csv):
        context.log.info(
            "no finance files configured (SAAS_METRICS_SPEND_CSV, SAAS_METRICS_GROSS_MARGIN_CSV): CAC stays null"
        )
    source = finance_source(
        spend_csv=str(settings.spend_csv) if settings.spend_csv else None,
        gross_margin_csv=str(settings.gross_margin_csv) if settings.gross_margin_csv else None,
        pnl_csv=str(settings.pnl_csv) if settings.pnl_csv else None,
    )
    yield from dlt.run(
        context=context,
        dlt_source=source,
        dlt_pipeline=finance_pipeline(),
        dagster_dlt_translator=FinanceTranslator(),
        credentials=runtime.dlt_credentials(),
    )
    ensure_finance_tables(url, RAW_FINANCE_SCHEMA)


PRODUCT_DESCRIPTIONS = {
    "events": "Product events (SAAS_METRICS_EVENTS_DB_URL table and/or SAAS_METRICS_EVENTS_DIR files), "
    "merged on event_id; late events within SAAS_METRICS_EVENTS_LATE_WINDOW_HOURS are picked up.",
    "account_mapping": "Account -> Stripe customer pairs (SAAS_METRICS_ACCOUNT_MAPPING_CSV), for accounts "
    "whose Stripe customer has no tenant metadata.",
}


def product_pipeline() -> dlt.Pipeline:
    return _pipeline("product", RAW_PRODUCT_SCHEMA)


@dg.multi_asset(
    name="product",
    specs=[
        dg.AssetSpec(key=["product", table], group_name="ingestion", description=description, kinds={"dlt", "postgres"})
        for table, description in PRODUCT_DESCRIPTIONS.items()
    ],
    op_tags={"saas_metrics/step": "ingest"},
    retry_policy=INGEST_RETRY_POLICY,
)
def product_assets(context: dg.AssetExecutionContext, warehouse: WarehouseResource, runtime_settings: SettingsResource):
    """One dlt load of product events (the SQL table and the event files both land in raw_product.events)."""
    settings = runtime_settings.get().product
    url = warehouse.url()
    cleaned = CleanedObjects()
    if not settings.configured and not settings.mapping_csv:
        context.log.info(
            "no product events configured (SAAS_METRICS_EVENTS_DB_URL, SAAS_METRICS_EVENTS_DIR): "
            "engagement marts stay empty"
        )
    else:
        pipeline = product_pipeline()
        try:
            source = product_source(
                database_url=settings.database_url,
                table=settings.table,
                columns=settings.columns,
                events_dir=str(settings.events_dir) if settings.events_dir else None,
                file_columns=settings.file_columns,
                late_window_hours=settings.late_window_hours,
                mapping_csv=str(settings.mapping_csv) if settings.mapping_csv else None,
                cleaned=cleaned,
            )
            pipeline.run(source, credentials=runtime.dlt_credentials())
        except Exception as exc:
            bad_input = _cause(exc, ProductEventsError)
            if bad_input is None:
                raise
            # a malformed file or setting will not get better by retrying
            raise dg.Failure(str(bad_input), allow_retries=False) from exc
        counts = pipeline.last_trace.last_normalize_info.row_counts if pipeline.last_trace else {}
        context.log.info(f"product events loaded: {counts.get('events', 0)} rows (merged on event_id)")
        if cleaned.total():
            context.log.warning(
                f"{cleaned.count('event')} product events stored with NUL characters removed "
                "(PostgreSQL cannot store them)"
            )
    ensure_product_tables(url, RAW_PRODUCT_SCHEMA)
    stats = _product_stats(url)
    stats["events_with_nul_removed"] = cleaned.count("event")
    yield dg.MaterializeResult(asset_key=["product", "events"], metadata=stats)
    yield dg.MaterializeResult(asset_key=["product", "account_mapping"])


def _cause(exc: BaseException | None, kind: type[BaseException]):
    while exc is not None:
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _product_stats(url: str) -> dict:
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        # the planner's row estimate: exact counts of tens of millions of rows cost seconds
        cur.execute(
            "select greatest(reltuples, 0)::bigint from pg_class where oid = %s::regclass",
            (f"{RAW_PRODUCT_SCHEMA}.events",),
        )
        rows = cur.fetchone()[0]
        cur.execute(f"select max(occurred_at) from {RAW_PRODUCT_SCHEMA}.events")
        latest = cur.fetchone()[0]
    return {"approx_rows": rows, "latest_event": latest.isoformat() if latest else "none"}
