"""The rollups built on Spark, into PostgreSQL (README "Lake mode"): intermediate.int_product_user_days and
intermediate.int_product_account_event_days, exactly where and as the PostgreSQL build makes them (the same
columns, types and indexes), so that everything downstream (accounts, health, activation, adoption, churn
risk, the churn model, the billing joins) reads them unchanged.

Only the days a build rewrote are copied: the days with a row of a load newer than the newest PostgreSQL
has (max_load_id), which are the days that received events; each such day is replaced whole, every table in
one transaction. Not with dlt: its bookkeeping columns and tables would land in `intermediate` beside the
models, and the types would be dlt's, not the model's.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import psycopg2
import pyarrow as pa
import pyarrow.csv as pacsv

from saas_metrics.lake.spark import SparkClient

SCHEMA = "intermediate"
DAYS_PER_READ = 31  # a full publish reads the rollups a month at a time: memory stays bounded

# the models' columns with PostgreSQL's types for them (what dbt-postgres builds from the same SQL)
ROLLUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "int_product_user_days": (
        ("account_id", "character varying"),
        ("user_id", "character varying"),
        ("activity_date", "date"),
        ("events", "bigint"),
        ("key_actions", "bigint"),
        ("has_admin_event", "boolean"),
        ("first_event_at", "timestamp with time zone"),
        ("max_load_id", "text"),
    ),
    "int_product_account_event_days": (
        ("account_id", "character varying"),
        ("activity_date", "date"),
        ("event_name", "character varying"),
        ("is_feature", "boolean"),
        ("is_key_action", "boolean"),
        ("events", "bigint"),
        ("users", "bigint"),
        ("max_load_id", "text"),
    ),
}
# the models' `indexes` config
INDEXES = (("activity_date",), ("account_id", "activity_date"))


@dataclass
class Published:
    table: str
    days: int  # days replaced
    rows: int  # rows written
    full: bool  # the whole table was replaced


def publish_rollups(
    spark: SparkClient, database_url: str, full: bool = False, on_message: Callable[[str], None] = print
) -> list[Published]:
    """Copy what the last Spark build changed into PostgreSQL, in one transaction; `full` copies everything
    (after a full rebuild, or when switching to lake mode)."""
    results = []
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(f"create schema if not exists {SCHEMA}")
        for table, columns in ROLLUPS.items():
            results.append(_publish_table(spark, cur, table, columns, full, on_message))
    return results


def _publish_table(spark: SparkClient, cur, table: str, columns, full: bool, on_message) -> Published:
    names = [name for name, _ in columns]
    cur.execute("select to_regclass(%s)", (f"{SCHEMA}.{table}",))
    exists = cur.fetchone()[0] is not None
    watermark = None
    if exists and not full:
        cur.execute(f"select max(max_load_id) from {SCHEMA}.{table}")
        watermark = cur.fetchone()[0]
    if watermark is None:
        days = _days(spark, f"select distinct activity_date from {SCHEMA}.{table}")
        full = True
    else:
        days = _days(
            spark,
            f"select distinct activity_date from {SCHEMA}.{table} where max_load_id > '{_quote(watermark)}'",
        )
    if not exists:
        definition = ", ".join(f"{name} {kind}" for name, kind in columns)
        cur.execute(f"create table {SCHEMA}.{table} ({definition})")
    if full:
        cur.execute(f"truncate {SCHEMA}.{table}")
    elif days:
        cur.execute(f"delete from {SCHEMA}.{table} where activity_date = any(%s)", (days,))
    rows = 0
    for start in range(0, len(days), DAYS_PER_READ):
        chunk = days[start : start + DAYS_PER_READ]
        in_list = ", ".join(f"date '{day.isoformat()}'" for day in chunk)
        data = spark.arrow(f"select {', '.join(names)} from {SCHEMA}.{table} where activity_date in ({in_list})")
        rows += _copy(cur, f"{SCHEMA}.{table}", data.select(names))
    for index_columns in INDEXES:
        name = f"{table}__{'_'.join(index_columns)}__lake"
        cur.execute(f"create index if not exists {name} on {SCHEMA}.{table} ({', '.join(index_columns)})")
    cur.execute(f"analyze {SCHEMA}.{table}")
    on_message(
        f"{SCHEMA}.{table}: {'replaced whole' if full else 'replaced'} {len(days)} day(s), {rows} row(s) from Spark"
    )
    return Published(table, len(days), rows, full)


def _days(spark: SparkClient, query: str) -> list:
    return sorted(day for day in spark.arrow(query).column(0).to_pylist() if day is not None)


def _quote(text: str) -> str:
    return text.replace("'", "''")


def _copy(cur, table: str, data: pa.Table) -> int:
    """COPY an Arrow table into `table`: CSV, where an empty field is NULL and "" an empty string."""
    if data.num_rows == 0:
        return 0
    buffer = io.BytesIO()
    pacsv.write_csv(data, buffer, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    buffer.seek(0)
    cur.copy_expert(f"copy {table} ({', '.join(data.column_names)}) from stdin with (format csv)", buffer)
    return data.num_rows
