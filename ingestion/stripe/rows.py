"""Rows of the raw tables as dlt takes them: Arrow tables built column by column (no per-row work in dlt),
the typed key columns next to each object, and the log filter for the JSON text they carry."""

from __future__ import annotations

import array
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from itertools import accumulate

import dlt
import pyarrow as pa
from dlt.common.json import json as fast_json

from ingestion.stripe import settings

# dlt's own columns: rows handed over as Arrow tables carry them (dlt adds them only to rows it normalises)
DLT_COLUMNS = {
    "_dlt_load_id": {"data_type": "text", "nullable": False},
    "_dlt_id": {"data_type": "text", "nullable": False, "unique": True, "row_key": True},
}


def price_id_of(obj: dict) -> str | None:
    """The price an invoice line or invoice item names, in the current shape or the legacy one."""
    details = (obj.get("pricing") or {}).get("price_details") or {}
    return _ref(details.get("price")) or _ref(obj.get("price")) or _ref(obj.get("plan"))


def timestamp_of(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def _ref(value) -> str | None:
    """An id whether the API returned it bare or expanded."""
    if isinstance(value, dict):
        return value.get("id")
    return value


def typed_keys(name: str, obj: dict) -> dict:
    """The typed key columns of a raw table's row (settings.RAW_TABLES), next to the object in `data`. `obj` is
    a dict or the fields of an object read lean: a field read here is listed in pages.FIELDS."""
    if name in ("subscriptions", "invoices", "credit_notes"):
        keys = {"customer_id": _ref(obj.get("customer"))}
        if name in ("subscriptions", "invoices"):
            keys["status"] = obj.get("status")
        if name == "invoices":
            parent = (obj.get("parent") or {}).get("subscription_details") or {}
            keys["subscription_id"] = _ref(parent.get("subscription")) or _ref(obj.get("subscription"))
        if name == "credit_notes":
            keys["invoice_id"] = _ref(obj.get("invoice"))
        return keys
    if name == "events":
        return {"type": obj.get("type")}
    return {}


CHILD_KEY = {"invoice_lines": "invoice_id", "subscription_items": "subscription_id"}
# rows handed to dlt at once, as one Arrow table: dlt's per-item overhead dominates small tables
BATCH_SIZE = 1000
_TIMESTAMP = pa.timestamp("us", tz="UTC")


class _JsonAsText(logging.Filter):
    """Drops dlt's warning that an Arrow table's `data` (JSON text) differs from the column's type (json): the
    difference is intended, PostgreSQL casts the text to jsonb on COPY. Any other warning passes."""

    ours = tuple(f"In resource: {name}," for name in (*settings.LISTS, "events"))

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith(self.ours) and "when merging arrow schema with dlt schema" in message)


logging.getLogger("dlt").addFilter(_JsonAsText())


def _arrow_schema(table: str) -> pa.Schema:
    """The columns of a raw table as dlt creates them (TABLES: the same for an empty one, where the lines and
    items tables have a `created` column too). The lines and items tables have no `created`; their parent's
    id is never null."""
    if table in CHILD_KEY:
        fields = [pa.field("id", pa.string(), nullable=False), pa.field("account", pa.string(), nullable=False)]
        fields.append(pa.field(CHILD_KEY[table], pa.string(), nullable=False))
    else:
        fields = [pa.field("id", pa.string(), nullable=False), pa.field("account", pa.string(), nullable=False)]
        fields.append(pa.field("created", _TIMESTAMP))
        fields += [pa.field(key, pa.string()) for key in settings.RAW_TABLES[table]]
    fields += [pa.field("data", pa.string()), pa.field("synced_at", _TIMESTAMP)]
    fields += [pa.field(name, pa.string(), nullable=False) for name in DLT_COLUMNS]
    return pa.schema(fields)


class Rows:
    """Rows of one raw table, column by column, handed to dlt as an Arrow table.

    dlt writes an Arrow table straight to a file and PostgreSQL copies it in: none of dlt's per-row work
    (normalising each dict, inferring its types, writing SQL literals), which bounded the load more than
    the request budget did. `data` is the object as JSON text (PostgreSQL casts it to jsonb on COPY);
    `_dlt_load_id` and `_dlt_id` are set here, as dlt sets them only on rows it normalises.
    """

    def __init__(self, table: str, synced_at: datetime, load_id: str, account: str = "default"):
        self.table = table
        self.account = account
        self.time_field = settings.time_field(table)  # an invoice item's `created` column is its `date`
        self.schema = _arrow_schema(table)
        self.synced_us = int(synced_at.timestamp() * 1_000_000)
        self.load_id = load_id
        self.columns: dict[str, list] = {
            f.name: [] for f in self.schema if f.name not in ("account", "synced_at", "_dlt_load_id", "_dlt_id")
        }
        self.dlt_ids: list[str] = []

    def __len__(self) -> int:
        return len(self.dlt_ids)

    def add(self, obj, keys: dict, text: bytes | None = None) -> None:
        """A row: the object's id and `created` (an invoice item's `date`; `obj`: a dict or the fields of an
        object read lean), its key columns, and `data`: its JSON text (the dict's, when not given)."""
        columns = self.columns
        columns["id"].append(obj["id"])
        if "created" in columns:
            created = obj.get(self.time_field)
            columns["created"].append(created * 1_000_000 if created is not None else None)
        for key, value in keys.items():
            columns[key].append(value)
        columns["data"].append(fast_json.dumpb(obj) if text is None else text)
        parent = keys.get(CHILD_KEY.get(self.table, ""))
        self.dlt_ids.append(f"{obj['id']}.{parent}" if parent else obj["id"])

    def take(self) -> pa.Table:
        """The rows added since the last take, as an Arrow table (and start again empty)."""
        n = len(self.dlt_ids)
        arrays = []
        for f in self.schema:
            if f.name == "synced_at":
                arrays.append(_timestamps([self.synced_us] * n))
            elif f.name == "account":
                arrays.append(_strings([self.account] * n))
            elif f.name == "created":
                arrays.append(_timestamps(self.columns["created"]))
            elif f.name == "_dlt_load_id":
                arrays.append(_strings([self.load_id] * n))
            elif f.name == "_dlt_id":
                # unique per row and load, as dlt's are (the account too: two accounts' rows share a load's id
                # when they are loaded together)
                arrays.append(_strings([f"{self.load_id}.{self.account}.{i}" for i in self.dlt_ids]))
            else:
                arrays.append(_strings(self.columns[f.name]))
        for values in self.columns.values():
            values.clear()
        self.dlt_ids.clear()
        return pa.Table.from_arrays(arrays, schema=self.schema)


# Columns are built from buffers, not with pa.array: it converts bytes (`data`) one by one at about 100 times
# the cost, and its first call imports pandas (most of a second of CPU, holding the GIL) to see whether it was
# handed a pandas array.


def _validity(values: list) -> tuple[pa.Buffer | None, int]:
    """The validity bitmap of a column (None where no value is null) and its count of nulls."""
    nulls = values.count(None)
    if not nulls:
        return None, 0
    bits = bytearray((len(values) + 7) // 8)
    for i, value in enumerate(values):
        if value is not None:
            bits[i >> 3] |= 1 << (i & 7)
    return pa.py_buffer(bits), nulls


def _strings(values: list[str | bytes | None]) -> pa.Array:
    """Text (str, UTF-8 bytes or None) as a string column: one buffer, its offsets and the validity bitmap."""
    encoded = [value.encode() if isinstance(value, str) else value for value in values]
    validity, nulls = _validity(encoded)
    if nulls:
        encoded = [b"" if value is None else value for value in encoded]
    offsets = array.array("i", accumulate(map(len, encoded), initial=0))
    data = pa.py_buffer(b"".join(encoded))
    return pa.StringArray.from_buffers(len(encoded), pa.py_buffer(offsets), data, validity, nulls)


def _timestamps(microseconds: list[int | None]) -> pa.Array:
    """Microseconds since the epoch (or None) as a UTC timestamp column."""
    validity, nulls = _validity(microseconds)
    values = [0 if value is None else value for value in microseconds] if nulls else microseconds
    return pa.Array.from_buffers(_TIMESTAMP, len(values), [validity, pa.py_buffer(array.array("q", values))], nulls)


def current_load_id() -> str:
    """The id of the load package being extracted (dlt's context: ask from the resource's own thread)."""
    return dlt.current.load_package_state()["load_id"]


def rows_of(table: str, objects: Iterable[dict], synced_at: datetime, load_id: str, account: str) -> pa.Table:
    rows = Rows(table, synced_at, load_id, account)
    for obj in objects:
        rows.add(obj, typed_keys(table, obj))
    return rows.take()
