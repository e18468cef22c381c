"""The product-events dlt source: events from the application's own database (dlt's SQL source)
and/or from NDJSON / Parquet files in a folder, into `raw_product.events`, plus the optional
account -> Stripe customer mapping file into `raw_product.account_mapping`.

Events are merged on `event_id`: an event delivered twice (a file re-exported, a window read
again) is stored once. The SQL table is read incrementally on its timestamp column, starting
`late_window_hours` before the last timestamp loaded, so events written late are picked up. A
file is read when it is new or changed (size or modification time): a late event in a new file
is loaded whatever its timestamp. Cursors and the files read are dlt state, committed only with
a successful load: a load that dies halfway is redone by the next.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import dlt
from dlt.sources import DltResource

from ingestion.cleaning import CleanedObjects
from ingestion.product import settings
from ingestion.product.helpers import (
    ProductEventsError,
    event_files,
    file_signature,
    mapping_rows,
    parse_column_map,
    read_event_file,
    to_event,
)
from ingestion.raw_tables import Index, RawTables

__all__ = ["product_source", "ProductEventsError", "TABLES"]

logger = logging.getLogger("saas_metrics.ingestion.product")

# The raw tables staging reads, as the resources declare them and as they are created empty when nothing
# was loaded yet (ingestion.raw_tables.ensure_tables), and the events table's indexes: BRIN on time and
# load id (cheap at tens of millions of rows; rows arrive in order), and one on event_id that dlt's merge
# uses to replace a re-delivered event.
TABLES = RawTables(
    schema=settings.RAW_SCHEMA,
    columns={
        "events": {
            "event_id": {"data_type": "text", "nullable": False},
            "account_id": {"data_type": "text", "nullable": False},
            "user_id": {"data_type": "text"},
            "event_name": {"data_type": "text", "nullable": False},
            "properties": {"data_type": "json"},
            "occurred_at": {"data_type": "timestamp", "nullable": False},
        },
        "account_mapping": {
            "account_id": {"data_type": "text", "nullable": False, "primary_key": True},
            "customer_id": {"data_type": "text"},
        },
    },
    indexes=[
        Index("events", "occurred_at", using="brin", name="events_occurred_at_brin"),
        Index("events", "_dlt_load_id", using="brin", name="events_load_id_brin"),
        Index("events", "event_id"),
    ],
)
MERGE = {"disposition": "merge", "strategy": "delete-insert"}


def _batched(rows: Iterator[dict]) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= settings.BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


def _sql_events(
    database_url: str, table: str, columns: dict[str, str], late_window_hours: float, cleaned: CleanedObjects
) -> DltResource:
    from dlt.sources.sql_database import sql_table

    scheme, sep, rest = database_url.partition("://")
    if scheme in ("postgres", "postgresql"):
        # SQLAlchemy's default PostgreSQL driver is psycopg 3; psycopg2 is the one installed
        database_url = f"postgresql+psycopg2://{rest}"
    schema, _, name = table.rpartition(".")
    source_columns = list(dict.fromkeys(columns.values()))
    resource = sql_table(
        credentials=database_url,
        table=name,
        schema=schema or None,
        included_columns=source_columns,
        incremental=dlt.sources.incremental(columns["occurred_at"], lag=late_window_hours * 3600),
        chunk_size=settings.BATCH_SIZE,
        reflection_level="minimal",
        write_disposition=MERGE,
        primary_key="event_id",
    )
    where = f"table {table}"
    # after the incremental step, which reads the cursor under its source name
    resource.add_map(lambda row: to_event(row, columns, where, cleaned), insert_at=len(resource._pipe.steps))
    resource.apply_hints(columns={})  # the source table's own columns are not the raw table's
    resource.apply_hints(table_name="events", columns=TABLES.hints("events"), primary_key="event_id")
    return resource.with_name("events")


@dlt.source(name="product", max_table_nesting=0)
def product_source(
    database_url: str | None = None,
    table: str = "events",
    columns: str | None = None,
    events_dir: str | None = None,
    file_columns: str | None = None,
    late_window_hours: float = settings.DEFAULT_LATE_WINDOW_HOURS,
    mapping_csv: str | None = None,
    cleaned: CleanedObjects | None = None,
) -> list[DltResource]:
    """Args:
    database_url: the application's database (any SQLAlchemy URL) holding the events table.
    table: that table, `schema.table` or `table`.
    columns: renames, "event_id=id,account_id=tenant_id,occurred_at=created_at" (raw column=source column).
    events_dir: a folder of .ndjson/.jsonl/.json (optionally .gz) and .parquet event files.
    file_columns: renames for the files, like `columns`.
    late_window_hours: how far back the SQL cursor is re-read for events written late.
    mapping_csv: account_id,customer_id rows for accounts whose Stripe customer has no tenant metadata.
    cleaned: records the events stored with NUL characters removed (PostgreSQL cannot store them).
    """
    cleaned = cleaned if cleaned is not None else CleanedObjects()
    column_map = parse_column_map(columns)
    file_column_map = parse_column_map(file_columns)
    if late_window_hours < 0:
        raise ProductEventsError(f"the late-event window must not be negative, got {late_window_hours}")
    resources: list[DltResource] = []
    if database_url:
        resources.append(_sql_events(database_url, table, column_map, late_window_hours, cleaned))

    def event_files_resource() -> Iterator[list[dict]]:
        if not events_dir:
            return
        state = dlt.current.resource_state().setdefault("files", {})
        folder = Path(events_dir)
        files = event_files(folder)
        todo = [path for path in files if state.get(str(path.relative_to(folder))) != file_signature(path)]
        logger.info("product events: %d of %d files in %s are new or changed", len(todo), len(files), folder)
        for path in todo:
            signature = file_signature(path)
            yield from _batched(read_event_file(path, file_column_map, cleaned))
            state[str(path.relative_to(folder))] = signature

    resources.append(
        dlt.resource(
            event_files_resource,
            name="event_files",
            table_name="events",
            write_disposition=MERGE,
            primary_key="event_id",
            columns=TABLES.hints("events"),
        )
    )

    def account_mapping() -> Iterator[list[dict]]:
        if mapping_csv:
            yield list(mapping_rows(Path(mapping_csv)))

    resources.append(
        dlt.resource(
            account_mapping,
            name="account_mapping",
            write_disposition="replace",
            columns=TABLES.hints("account_mapping"),
        )
    )
    return resources
