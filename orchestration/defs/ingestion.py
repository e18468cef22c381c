"""dlt loads as Dagster assets, the three sources one way. Each raw table is an asset whose key equals the
key dagster-dbt gives the matching dbt source ([<source>, <table>]), so lineage runs raw -> staging ->
marts in one graph. Each load is run by dagster-dlt (`DagsterDltResource.run`) with one translator
(`RawTranslator`) and one pipeline factory (`pipeline`), retried when it may get better, failed at once
when it will not (bad input, a full disk); then the tables it had nothing for are created empty
(ingestion/raw_tables.py)."""

import errno
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.sources import DltSource

from ingestion import finance, product, stripe
from ingestion.cleaning import CleanedObjects
from ingestion.finance import FinanceFileError, finance_source
from ingestion.product import ProductEventsError, product_source
from ingestion.raw_tables import RawTables, add_missing_column, ensure_tables
from ingestion.stripe import StripeAuthError, stripe_source
from ingestion.stripe import settings as stripe_settings
from orchestration.defs.resources import SettingsResource, WarehouseResource
from saas_metrics import runtime
from saas_metrics.config import LEGACY_STRIPE_ACCOUNT, RAW_FINANCE_SCHEMA, RAW_PRODUCT_SCHEMA, RAW_STRIPE_SCHEMA


@dataclass
class RawTranslator(DagsterDltTranslator):
    """The raw tables of one dlt source as assets [source, table] of the ingestion group. A resource is the
    asset of the table it loads (product's `events` and `event_files` both load product/events); the
    tables a resource fills besides its own (Stripe's invoice_lines) are assets of their own all the same."""

    source: str  # the key prefix and the dlt pipeline's name
    title: str  # what the log calls the load
    schema: str  # where it loads (saas_metrics.config)
    tables: RawTables  # ingestion/<source>: the tables, their columns and indexes
    descriptions: Mapping[str, str]

    def spec(self, table: str) -> dg.AssetSpec:
        return dg.AssetSpec(
            key=[self.source, table],
            group_name="ingestion",
            description=self.descriptions[table],
            kinds={"dlt", "postgres"},
        )

    def specs(self) -> list[dg.AssetSpec]:
        return [self.spec(table) for table in self.tables.columns]

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        return self.spec(data.resource.table_name)


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
    # filled by the invoices and subscriptions resources: loaded in the same step, materialized with it
    "invoice_lines": "Every line of every Stripe invoice, past the 10 Stripe embeds (loaded with invoices).",
    "subscription_items": "Every item of every Stripe subscription, past the 10 Stripe embeds "
    "(loaded with subscriptions).",
}
FINANCE_DESCRIPTIONS = {
    "marketing_spend": "Sales and marketing spend by month and channel (SAAS_METRICS_SPEND_CSV).",
    "gross_margin": "Gross margin by month (SAAS_METRICS_GROSS_MARGIN_CSV).",
    "pnl": "Monthly P&L: revenue, operating expenses, net burn (SAAS_METRICS_PNL_CSV; optional).",
    "contracts": "Contracts billed outside Stripe, one row per version (SAAS_METRICS_CONTRACTS_CSV; optional).",
    "customer_mapping": "Customers of several sources that are one company (SAAS_METRICS_CUSTOMER_MAPPING_CSV; "
    "optional).",
}
PRODUCT_DESCRIPTIONS = {
    "events": "Product events (SAAS_METRICS_EVENTS_DB_URL table and/or SAAS_METRICS_EVENTS_DIR files), "
    "merged on event_id; late events within SAAS_METRICS_EVENTS_LATE_WINDOW_HOURS are picked up.",
    "account_mapping": "Account -> Stripe customer pairs (SAAS_METRICS_ACCOUNT_MAPPING_CSV), for accounts "
    "whose Stripe customer has no tenant metadata.",
}
STRIPE = RawTranslator("stripe", "the Stripe load", RAW_STRIPE_SCHEMA, stripe.TABLES, STRIPE_DESCRIPTIONS)
FINANCE = RawTranslator("finance", "the finance files' load", RAW_FINANCE_SCHEMA, finance.TABLES, FINANCE_DESCRIPTIONS)
PRODUCT = RawTranslator("product", "the product events' load", RAW_PRODUCT_SCHEMA, product.TABLES, PRODUCT_DESCRIPTIONS)


def pipeline(name: str, dataset: str) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=name,
        destination="postgres",
        dataset_name=dataset,
        pipelines_dir=str(runtime.settings().dlt_pipelines_dir),
        progress="log",
    )


# Requests already retry 429s, 5xx, dropped connections and bodies cut short; a load that still fails
# (Stripe down for minutes) is retried: the n-th retry n delays after its failure (default twice, 60 s then
# 120 s later; Dagster's EXPONENTIAL would wait 60 s then 180 s). Bad input is not (a bad key, a malformed
# file or setting), nor a full disk: they will not get better.
INGEST_RETRY_POLICY = dg.RetryPolicy(
    max_retries=runtime.settings().ingest_retries,
    delay=runtime.settings().ingest_retry_delay,
    backoff=dg.Backoff.LINEAR,
)


def raw_assets(translator: RawTranslator):
    """The multi-asset of one source's load: an asset per raw table, the ingest step's tag, the retry policy."""
    return dg.multi_asset(
        name=translator.source,
        specs=translator.specs(),
        op_tags={"saas_metrics/step": "ingest"},
        retry_policy=INGEST_RETRY_POLICY,
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


def load(
    context: dg.AssetExecutionContext,
    dlt_resource: DagsterDltResource,
    translator: RawTranslator,
    make_source: Callable[[], DltSource],
    bad_input: type[Exception],
    dlt_pipeline: dlt.Pipeline | None = None,
    pipeline_name: str | None = None,
    announce: bool = True,
) -> dict[dg.AssetKey, dg.MaterializeResult]:
    """One load of the source `make_source` builds, by dagster-dlt, into the warehouse (or by `dlt_pipeline`,
    which names its own destination: lake mode's), by the dlt pipeline `pipeline_name` (its incremental state;
    the source's name by default); its materializations by asset key. An error caused by `bad_input` fails
    the step at once, in its own words; any other is retried, the retry announced (unless not `announce`)."""
    try:
        results = dlt_resource.run(
            context=context,
            dlt_source=make_source(),
            dlt_pipeline=dlt_pipeline or pipeline(pipeline_name or translator.source, translator.schema),
            dagster_dlt_translator=translator,
            **({} if dlt_pipeline else {"credentials": runtime.dlt_credentials()}),
        )
        return {result.asset_key: result for result in results}
    except Exception as exc:
        if (full := _disk_full(exc)) is not None:
            raise dg.Failure(f"no space left on {full}", allow_retries=False) from exc
        cause = _cause(exc, bad_input)
        if cause is None:
            if announce:
                announce_retry(context, translator.title, exc)
            raise
        raise dg.Failure(str(cause), allow_retries=False) from exc


def materializations(
    context: dg.AssetExecutionContext,
    url: str,
    translator: RawTranslator,
    results: Mapping[dg.AssetKey, dg.MaterializeResult],
    metadata: Callable[[str], Mapping],
):
    """After a load: the tables it had nothing for created empty, then a materialization of every table of the
    source (the load's own, with dagster-dlt's metadata, or a bare one) with `metadata(table)` added."""
    created = ensure_tables(url, translator.tables, translator.schema)
    if created:
        context.log.info(f"created empty raw tables with nothing to load yet: {', '.join(created)}")
    for table in translator.tables.columns:
        key = dg.AssetKey([translator.source, table])
        result = results.get(key) or dg.MaterializeResult(asset_key=key)
        yield result._replace(metadata={**(result.metadata or {}), **metadata(table)})


def _disk_full(exc: BaseException | None) -> Path | None:
    """The folder that has no space left, if that is what failed the load (ENOSPC anywhere in the chain): the
    dlt folder where dlt writes the load's files (or the folder of the file named, when it is elsewhere). A
    retry minutes later finds the disk as full: the step fails at once."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            folder = Path(runtime.settings().dlt_pipelines_dir)
            written = Path(exc.filename) if isinstance(exc.filename, str) else None
            if written is not None and not written.is_relative_to(folder):
                return written.parent
            return folder
        exc = exc.__cause__ or exc.__context__
    return None


def _cause(exc: BaseException | None, kind: type[BaseException]):
    while exc is not None:
        if isinstance(exc, kind):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


class StripeLoadConfig(dg.Config):
    full_refresh: bool = False


@raw_assets(STRIPE)
def stripe_assets(
    context: dg.AssetExecutionContext,
    dlt: DagsterDltResource,
    warehouse: WarehouseResource,
    runtime_settings: SettingsResource,
    config: StripeLoadConfig,
):
    """Every configured Stripe account loaded in turn, each by its own dlt pipeline (its own incremental state),
    into the same raw tables, its rows marked with its name (README "Several Stripe accounts"). An account
    that fails is named and does not undo the others' loads: the step fails after all were tried."""
    settings = runtime_settings.get()
    accounts = settings.stripe_accounts
    if not accounts:
        raise dg.Failure("STRIPE_API_KEY is not set (nor SAAS_METRICS_STRIPE_ACCOUNTS): cannot load Stripe")
    url = warehouse.url()
    migrated = add_missing_column(url, STRIPE.tables, "account", LEGACY_STRIPE_ACCOUNT, STRIPE.schema)
    if migrated:
        context.log.info(
            f"raw Stripe tables loaded before accounts existed marked account {LEGACY_STRIPE_ACCOUNT!r}: "
            + ", ".join(migrated)
        )
    cleaned = CleanedObjects()
    per_account: dict[str, dict[dg.AssetKey, dg.MaterializeResult]] = {}
    failures: dict[str, Exception] = {}
    for account in accounts:

        def source(account=account) -> DltSource:
            return stripe_source(
                api_key=account.api_key,
                api_base=account.api_base,
                account=account.name,
                stripe_account=account.stripe_account,
                full_refresh=config.full_refresh,
                max_rps=settings.stripe_max_rps,
                concurrency=settings.stripe_concurrency,
                cleaned=cleaned,
                timeout=settings.stripe_timeout,
            )

        if len(accounts) == 1:
            per_account[account.name] = load(
                context, dlt, STRIPE, source, bad_input=StripeAuthError, pipeline_name=account.pipeline_name
            )
            continue
        context.log.info(f"loading Stripe account {account.name}")
        try:
            per_account[account.name] = load(
                context,
                dlt,
                STRIPE,
                source,
                bad_input=StripeAuthError,
                pipeline_name=account.pipeline_name,
                announce=False,
            )
        except Exception as exc:  # noqa: BLE001 - each account's failure is reported below, by name
            failures[account.name] = exc
            context.log.error(f"Stripe account {account.name} failed to load: {_first_line(exc)}")
    if failures:
        loaded = [name for name in per_account]
        kept = f"the others ({', '.join(loaded)}) are loaded and kept" if loaded else "no account loaded"
        named = "; ".join(f"{name} ({_first_line(exc)})" for name, exc in failures.items())
        # a refused key will not get better: retried only when some failure may (an outage)
        retry = any(not (isinstance(exc, dg.Failure) and not exc.allow_retries) for exc in failures.values())
        message = f"Stripe account(s) failed to load: {named}; {kept}"
        if retry:
            announce_retry(context, "the Stripe load", RuntimeError(message))
        raise dg.Failure(message, allow_retries=retry)
    if cleaned.total():
        context.log.warning(
            "stored with NUL characters removed (PostgreSQL cannot store them): "
            + ", ".join(f"{n} {kind}" for kind, n in sorted(cleaned.counts().items()))
        )
    _warn_unconfigured_accounts(context, url, {account.name for account in accounts})
    results = _merged(per_account)

    def table_metadata(table: str) -> dict:
        """How many of this load's objects of a table were stored with NUL characters removed; with several
        accounts, the rows each loaded."""
        extra: dict = {"objects_with_nul_removed": cleaned.count(stripe_settings.object_type_of(table))}
        if len(accounts) > 1:
            key = dg.AssetKey([STRIPE.source, table])
            for name, account_results in per_account.items():
                rows = ((account_results.get(key) and account_results[key].metadata) or {}).get("rows_loaded")
                extra[f"rows_loaded_{name}"] = getattr(rows, "value", rows) or 0
        return extra

    yield from materializations(context, url, STRIPE, results, table_metadata)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _merged(per_account: Mapping[str, Mapping[dg.AssetKey, dg.MaterializeResult]]):
    """One materialization per table from the loads of several accounts (a step materializes an asset once):
    the first account's, rows_loaded summed."""
    merged: dict[dg.AssetKey, dg.MaterializeResult] = {}
    for results in per_account.values():
        for key, result in results.items():
            if key not in merged:
                merged[key] = result
                continue
            metadata = dict(merged[key].metadata or {})
            before, more = metadata.get("rows_loaded"), (result.metadata or {}).get("rows_loaded")
            if before is not None and more is not None:
                metadata["rows_loaded"] = getattr(before, "value", before) + getattr(more, "value", more)
            merged[key] = merged[key]._replace(metadata=metadata)
    return merged


def _warn_unconfigured_accounts(context: dg.AssetExecutionContext, url: str, configured: set[str]) -> None:
    """Raw Stripe rows of an account no longer configured stay in the marts: say so, once per load."""
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        # an account without customers yet: no table until ensure_tables creates it empty
        cur.execute("select to_regclass(%s) is not null", (f"{RAW_STRIPE_SCHEMA}.customers",))
        if not cur.fetchone()[0]:
            return
        cur.execute(f"select distinct account from {RAW_STRIPE_SCHEMA}.customers")
        stale = sorted({row[0] for row in cur.fetchall()} - configured)
    if stale:
        context.log.warning(
            f"raw_stripe holds customers of account(s) no longer configured: {', '.join(stale)}; they stay in the "
            f"marts until deleted (delete from raw_stripe.<table> where account = '...')"
        )


@raw_assets(FINANCE)
def finance_assets(
    context: dg.AssetExecutionContext,
    dlt: DagsterDltResource,
    warehouse: WarehouseResource,
    runtime_settings: SettingsResource,
):
    settings = runtime_settings.get()
    if not (settings.spend_csv or settings.gross_margin_csv):
        context.log.info(
            "no finance files configured (SAAS_METRICS_SPEND_CSV, SAAS_METRICS_GROSS_MARGIN_CSV): CAC stays null"
        )

    def source() -> DltSource:
        return finance_source(
            spend_csv=str(settings.spend_csv) if settings.spend_csv else None,
            gross_margin_csv=str(settings.gross_margin_csv) if settings.gross_margin_csv else None,
            pnl_csv=str(settings.pnl_csv) if settings.pnl_csv else None,
            contracts_csv=str(settings.contracts_csv) if settings.contracts_csv else None,
            customer_mapping_csv=str(settings.customer_mapping_csv) if settings.customer_mapping_csv else None,
        )

    results = load(context, dlt, FINANCE, source, bad_input=FinanceFileError)
    yield from materializations(context, warehouse.url(), FINANCE, results, lambda table: {})


@raw_assets(PRODUCT)
def product_assets(
    context: dg.AssetExecutionContext,
    dlt: DagsterDltResource,
    warehouse: WarehouseResource,
    runtime_settings: SettingsResource,
):
    """One dlt load of product events (the SQL table and the event files both land in raw_product.events)."""
    settings = runtime_settings.get().product
    url = warehouse.url()
    cleaned = CleanedObjects()
    results: Mapping[dg.AssetKey, dg.MaterializeResult] = {}
    if not settings.configured and not settings.mapping_csv:
        context.log.info(
            "no product events configured (SAAS_METRICS_EVENTS_DB_URL, SAAS_METRICS_EVENTS_DIR): "
            "engagement marts stay empty"
        )
    else:

        def source() -> DltSource:
            return product_source(
                database_url=settings.database_url,
                table=settings.table,
                columns=settings.columns,
                events_dir=str(settings.events_dir) if settings.events_dir else None,
                file_columns=settings.file_columns,
                late_window_hours=settings.late_window_hours,
                mapping_csv=str(settings.mapping_csv) if settings.mapping_csv else None,
                cleaned=cleaned,
            )

        results = load(context, dlt, PRODUCT, source, bad_input=ProductEventsError)
        events = results.get(dg.AssetKey(["product", "events"]))
        rows = (events.metadata or {}).get("rows_loaded") if events else None
        context.log.info(f"product events loaded: {rows.value if rows else 0} rows (merged on event_id)")
        if cleaned.total():
            context.log.warning(
                f"{cleaned.count('event')} product events stored with NUL characters removed "
                "(PostgreSQL cannot store them)"
            )

    def events_metadata(table: str) -> dict:
        """The size and reach of raw_product.events, and the events of this load stored with NULs removed."""
        if table != "events":
            return {}
        return {**_product_stats(url), "events_with_nul_removed": cleaned.count("event")}

    yield from materializations(context, url, PRODUCT, results, events_metadata)


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
