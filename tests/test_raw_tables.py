"""The raw tables created empty when a load had nothing for them (ingestion/raw_tables.py) have the shape
dlt gives the tables it loads: each column declared once, by the source."""

from __future__ import annotations

import time
from pathlib import Path

import dlt

from ingestion import finance, product, stripe
from ingestion.finance import finance_source
from ingestion.product import product_source
from ingestion.raw_tables import create_table_sql, ensure_tables
from ingestion.stripe import stripe_source
from saas_metrics.demo.account import generate
from saas_metrics.demo.server import StripeProtocolServer
from saas_metrics.demo.store import Store
from tests.conftest import query
from tests.support.pipeline import API_KEY

SOURCES = (stripe.TABLES, finance.TABLES, product.TABLES)


def test_create_table_sql_from_the_column_hints():
    assert create_table_sql("raw_finance", "gross_margin", finance.TABLES.columns["gross_margin"]) == (
        # a primary key's columns are not null (dlt's default for a primary key)
        'create table "raw_finance"."gross_margin" (month date not null, gross_margin numeric(38, 9), '
        "_dlt_load_id varchar not null, _dlt_id varchar not null)"
    )
    assert create_table_sql("raw_product", "events", product.TABLES.columns["events"]) == (
        'create table "raw_product"."events" (event_id varchar not null, account_id varchar not null, '
        "user_id varchar, event_name varchar not null, properties jsonb, occurred_at timestamptz not null, "
        "_dlt_load_id varchar not null, _dlt_id varchar not null)"
    )
    # dlt's own columns last, whether declared (Stripe: rows come as Arrow tables) or not
    assert create_table_sql("raw_stripe", "invoices", stripe.TABLES.columns["invoices"]) == (
        'create table "raw_stripe"."invoices" (id varchar not null, account varchar not null, created timestamptz, '
        "data jsonb, "
        "synced_at timestamptz, customer_id varchar, subscription_id varchar, status varchar, "
        "_dlt_load_id varchar not null, _dlt_id varchar not null)"
    )


def columns(url: str, schema: str) -> dict[str, dict[str, tuple]]:
    """table -> column -> (type, nullable), of the data tables of `schema` (not dlt's own)."""
    tables: dict[str, dict[str, tuple]] = {}
    for table, column, type_, nullable in query(
        url,
        "select table_name, column_name, data_type, is_nullable from information_schema.columns "
        "where table_schema = %s and table_name not like '\\_dlt%%'",
        (schema,),
    ):
        tables.setdefault(table, {})[column] = (type_, nullable)
    return tables


def indexes(url: str, schema: str) -> set[str]:
    return {row[0] for row in query(url, "select indexname from pg_indexes where schemaname = %s", (schema,))}


def test_empty_tables_have_the_shape_of_loaded_ones(tmp_path, fresh_database):
    now = int(time.time())
    store = Store(tmp_path / "stripe.sqlite")
    generate(store, customers=6, months=3, seed=3, now=now, events_dir=tmp_path / "events")
    mapping = tmp_path / "mapping.csv"
    mapping.write_text("account_id,customer_id\nacct_x,cus_x\n")
    loaded = fresh_database("loaded")

    def load(source, tables) -> None:
        destination = dlt.destinations.postgres(loaded)
        pipeline = dlt.pipeline(
            source.name, destination=destination, dataset_name=tables.schema, pipelines_dir=str(tmp_path / "dlt")
        )
        pipeline.run(source)

    with StripeProtocolServer(store, api_key=API_KEY, now=now) as server:
        load(stripe_source(api_key=API_KEY, api_base=server.url, max_rps=2000), stripe.TABLES)
    sample = Path(finance.__file__).parent / "sample"
    files = {name: str(sample / f"{name}.csv") for name in ("marketing_spend", "gross_margin", "pnl")}
    load(finance_source(files["marketing_spend"], files["gross_margin"], files["pnl"]), finance.TABLES)
    load(product_source(events_dir=str(tmp_path / "events"), mapping_csv=str(mapping)), product.TABLES)

    empty = fresh_database("empty")
    for tables in SOURCES:
        assert ensure_tables(empty, tables) == list(tables.columns)
        assert ensure_tables(empty, tables) == []  # the second time: nothing to create
        dlt_made, made_empty = columns(loaded, tables.schema), columns(empty, tables.schema)
        assert set(made_empty) == set(tables.columns)
        for table, made in dlt_made.items():
            if table in ("invoice_lines", "subscription_items"):
                # created empty like the other Stripe tables, with `created` (bench/common.py writes it) and the
                # parent's id nullable; dlt gives them neither
                parent = stripe.CHILD_KEY[table]
                made = {**made, "created": ("timestamp with time zone", "YES"), parent: ("character varying", "YES")}
            assert made_empty[table] == made, table
        assert indexes(empty, tables.schema) >= {
            index.name or f"{index.table}_{index.column}" for index in tables.indexes
        }
    # the Stripe shapes compared: object tables with and without typed keys, the lines and items tables
    loaded_tables = {"customers", "subscriptions", "invoices", "events", "invoice_lines", "subscription_items"}
    assert set(columns(loaded, "raw_stripe")) >= loaded_tables
