"""Product events into a lake (README "Lake mode"): the same source, loaded by dlt's `filesystem` destination
into `<lake>/raw_product/events` instead of PostgreSQL.

The table is a Delta table (written by delta-rs) partitioned by `event_date`, the event's UTC day, so that a
build of some days reads only their folders. Events are merged "insert-only" on (event_date, event_id): an
event already in the lake is not written again (a re-exported file, the SQL source's re-read window), and no
file is ever rewritten, only added. So the folder is at once a Delta table (for a cluster with Delta's jars)
and plain Parquet partitions that any Spark reads (for one without). Two deliveries of a new event in one
load are both written (delta-rs inserts every unmatched row): staging keeps one (macros/lake.sql).
"""

from __future__ import annotations

from datetime import date, datetime

import dlt
from dlt.sources import DltSource

from ingestion.product import TABLES
from ingestion.product import settings as product_settings

EVENT_RESOURCES = ("events", "event_files")  # product_source's resources that load raw events
LAKE_COLUMNS = {
    **TABLES.hints("events"),
    "event_date": {"data_type": "date", "nullable": False, "partition": True},
}
INSERT_ONLY = {"disposition": "merge", "strategy": "insert-only"}


def event_date(occurred_at: datetime) -> date:
    """The UTC day of an event (to_event makes every timestamp aware and UTC)."""
    return occurred_at.date()


def _with_event_date(row: dict) -> dict:
    row["event_date"] = event_date(row["occurred_at"])
    return row


def lake_events(source: DltSource) -> DltSource:
    """`source` (product_source) with only its event resources, loading the lake's table."""
    lake = source.with_resources(*[name for name in EVENT_RESOURCES if name in source.resources])
    for resource in lake.resources.values():
        resource.add_map(_with_event_date)
        resource.apply_hints(
            table_name="events",
            write_disposition=INSERT_ONLY,
            primary_key=["event_date", "event_id"],
            columns=LAKE_COLUMNS,
            table_format="delta",
            file_format="parquet",
        )
    return lake


def lake_pipeline(bucket_url: str, pipelines_dir: str, name: str = "product_lake") -> dlt.Pipeline:
    """The pipeline of the lake's loads: its state (the files read, the SQL cursor) lives with the lake."""
    return dlt.pipeline(
        pipeline_name=name,
        destination=dlt.destinations.filesystem(bucket_url),
        dataset_name=product_settings.RAW_SCHEMA,
        pipelines_dir=pipelines_dir,
        progress="log",
    )


def ensure_events_table(bucket_url: str) -> bool:
    """Create the lake's events table empty when nothing was loaded yet (the build reads it all the same);
    True when it was created. Local folders only: a cloud lake's first load creates it."""
    if not bucket_url.startswith("file://"):
        return False
    from pathlib import Path

    from deltalake import DeltaTable, write_deltalake

    path = Path(bucket_url.removeprefix("file://")) / product_settings.RAW_SCHEMA / "events"
    if DeltaTable.is_deltatable(str(path)):
        return False
    import pyarrow as pa

    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("account_id", pa.string()),
            ("user_id", pa.string()),
            ("event_name", pa.string()),
            ("properties", pa.string()),
            ("occurred_at", pa.timestamp("us", "UTC")),
            ("event_date", pa.date32()),
            ("_dlt_load_id", pa.string()),
            ("_dlt_id", pa.string()),
        ]
    )
    path.mkdir(parents=True, exist_ok=True)
    write_deltalake(str(path), schema.empty_table(), partition_by=["event_date"], mode="append")
    return True
