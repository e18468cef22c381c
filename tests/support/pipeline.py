"""The real pipeline for tests: serve a Store over Stripe's protocol, load it with the dlt source,
build with dbt. Nothing here is mocked but Stripe's servers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dlt

from ingestion import finance, product, stripe
from ingestion.raw_tables import ensure_tables
from ingestion.stripe import stripe_source
from saas_metrics.dbt_cli import run_dbt
from saas_metrics.demo.server import StripeProtocolServer
from saas_metrics.demo.store import Store
from tests.support.faults import Faults

API_KEY = "sk_test_saas_metrics_tests"


def load_from(
    api_base: str,
    api_key: str,
    database_url: str,
    work_dir: Path,
    *,
    full_refresh: bool = False,
    pipeline_name: str = "stripe",
    max_retries: int | None = None,
    cleaned=None,
    account: str = "default",
    stripe_account: str | None = None,
):
    """One load by the dlt Stripe source from any server speaking Stripe's protocol, its rows marked `account`."""
    pipeline = dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=dlt.destinations.postgres(database_url),
        dataset_name="raw_stripe",
        pipelines_dir=str(work_dir / "dlt"),
    )
    kwargs = {"max_retries": max_retries} if max_retries is not None else {}
    source = stripe_source(
        api_key=api_key,
        api_base=api_base,
        full_refresh=full_refresh,
        max_rps=2000,
        cleaned=cleaned,
        account=account,
        stripe_account=stripe_account,
        **kwargs,
    )
    info = pipeline.run(source)
    ensure_tables(database_url, stripe.TABLES)
    return info


def load_stripe(
    store: Store,
    database_url: str,
    work_dir: Path,
    now: int,
    *,
    full_refresh: bool = False,
    faults: Faults | None = None,
    pipeline_name: str = "stripe",
    max_retries: int | None = None,
    account: str = "default",
    api_key: str = API_KEY,
):
    """One load from a Stripe-protocol server over `store` (its rows marked `account`); returns (load_info,
    server stats)."""
    with StripeProtocolServer(store, api_key=api_key, now=now, faults=faults) as server:
        info = load_from(
            server.url,
            api_key,
            database_url,
            work_dir,
            full_refresh=full_refresh,
            pipeline_name=pipeline_name,
            max_retries=max_retries,
            account=account,
        )
        return info, server.stats


def dbt_build(
    database_url: str,
    work_dir: Path,
    now: int,
    select: str | None = None,
    full_refresh: bool = False,
    extra_vars: dict | None = None,
) -> str:
    """A real `dbt build` of the project against `database_url`, "today" frozen at `now`.

    Like the dbt asset of every run, makes sure raw_finance and raw_product exist (empty without input)."""
    ensure_tables(database_url, finance.TABLES)
    ensure_tables(database_url, product.TABLES)
    as_of = datetime.fromtimestamp(now, UTC).isoformat()
    # the dbt unit tests have a test of their own (tests/test_dbt_unit_tests.py), as the nightly leaves them out
    args = ["build", "--exclude-resource-type", "unit_test"]
    args += (["--select", select] if select else []) + (["--full-refresh"] if full_refresh else [])
    result = run_dbt(args, database_url, work_dir / "dbt_target", {"as_of": as_of, **(extra_vars or {})})
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-40:])
        raise AssertionError(f"dbt build failed:\n{tail}")
    return result.stdout


def load_finance(database_url: str, work_dir: Path, **files: str) -> None:
    """Load finance files given as text (spend_csv=, gross_margin_csv=, pnl_csv=) with the finance source."""
    from ingestion.finance import finance_source

    paths = {}
    for name, text in files.items():
        paths[name] = work_dir / f"{name.removesuffix('_csv')}.csv"
        paths[name].write_text(text)
    dlt.pipeline(
        "finance_test",
        destination=dlt.destinations.postgres(database_url),
        dataset_name="raw_finance",
        pipelines_dir=str(work_dir / "dlt"),
    ).run(finance_source(**{name: str(path) for name, path in paths.items()}))


def scenario_warehouse(
    name: str,
    build: Callable[[Store], None],
    now: int,
    fresh_database,
    tmp_path_factory,
    finance_files: dict[str, str] | None = None,
    also: Callable[[str, Path], None] | None = None,
) -> tuple[str, Path]:
    """A warehouse of a test's own account: `build` writes it into a store, which is loaded over Stripe's protocol
    into a new database with the finance files given as text (load_finance); `also(url, work)` loads what else
    the test has (product events); then dbt builds it as of `now`. Returns its URL and the work folder."""
    work = tmp_path_factory.mktemp(name)
    store = Store(work / "stripe.sqlite")
    build(store)
    url = fresh_database(name)
    load_stripe(store, url, work, now)
    if finance_files:
        load_finance(url, work, **finance_files)
    if also is not None:
        also(url, work)
    dbt_build(url, work, now)
    return url, work
