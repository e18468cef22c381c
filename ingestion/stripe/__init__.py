"""The Stripe dlt source: everything MRR, churn and LTV need, loaded into `raw_stripe`.

Each table keeps the full Stripe object in a `data` jsonb column (staging reads the
current API shape and the legacy one from it) next to a few typed key columns. Invoice
lines and subscription items get tables of their own, complete past Stripe's 10 embedded
rows, and are replaced per invoice / subscription on every reload, so a rerun never
duplicates a row and a removed item disappears.

Loads are incremental: the first run (or `full_refresh=True`, or a last sync older than
Stripe's 30-day event window) lists every object; later runs list objects created since the
cursor and re-fetch the ones that events say changed. Invoice items Stripe deleted (pending
prorations of a change undone) are loaded from their `invoiceitem.deleted` event with
`"deleted": true`. Prices the lists do not return but invoice lines or items name (a deleted
legacy plan) are fetched by id. The cursor is dlt state, committed
only with a successful load, so a run that dies halfway is redone by the next one.
"""

from __future__ import annotations

import array
import functools
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import accumulate, islice
from typing import NamedTuple

import dlt
import pyarrow as pa
from dlt.common.json import json as fast_json
from dlt.sources import DltResource

from ingestion.cleaning import CleanedObjects
from ingestion.raw_tables import Index, RawTables
from ingestion.stripe import pages as lean_pages
from ingestion.stripe import settings
from ingestion.stripe.helpers import StripeApi, StripeAuthError, StripeFetchError
from ingestion.stripe.pages import LeanObject

__all__ = ["stripe_source", "StripeAuthError", "StripeFetchError", "TABLES"]

logger = logging.getLogger("saas_metrics.ingestion.stripe")

MERGE = {"disposition": "merge", "strategy": "delete-insert"}
# dlt's own columns: rows handed over as Arrow tables carry them (dlt adds them only to rows it normalises)
DLT_COLUMNS = {
    "_dlt_load_id": {"data_type": "text", "nullable": False},
    "_dlt_id": {"data_type": "text", "nullable": False, "unique": True, "row_key": True},
}
# Typed key columns (customer_id, status, ...) come with the rows (settings.RAW_TABLES); `data` holds the object.
# `account`: the Stripe account a row came from (config.StripeAccount.name; "default" for STRIPE_API_KEY alone),
# part of every key, as two accounts can hold the same id (a price or coupon id is the user's to choose)
ACCOUNT_COLUMN = {"account": {"data_type": "text", "nullable": False}}
BASE_COLUMNS = {
    "id": {"data_type": "text", "nullable": False},
    **ACCOUNT_COLUMN,
    "created": {"data_type": "timestamp"},
    "data": {"data_type": "json"},
    "synced_at": {"data_type": "timestamp"},
    **DLT_COLUMNS,
}
# Every table staging reads, as an empty one is created when a load had nothing for it (no coupons, no
# credit notes; ingestion.raw_tables.ensure_tables): the object columns and the typed keys
# (settings.RAW_TABLES; the lines and items tables too, `created` included), and settings.RAW_INDEXES.
TABLES = RawTables(
    schema="raw_stripe",
    columns={
        table: {**BASE_COLUMNS, **{key: {"data_type": "text"} for key in keys}}
        for table, keys in settings.RAW_TABLES.items()
    },
    indexes=[Index(table, column) for table, columns in settings.RAW_INDEXES.items() for column in columns],
)


def _price_id(obj: dict) -> str | None:
    """The price an invoice line or invoice item names, in the current shape or the legacy one."""
    details = (obj.get("pricing") or {}).get("price_details") or {}
    return _ref(details.get("price")) or _ref(obj.get("price")) or _ref(obj.get("plan"))


def _ts(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


def _ref(value) -> str | None:
    """An id whether the API returned it bare or expanded."""
    if isinstance(value, dict):
        return value.get("id")
    return value


class SyncPlan:
    """Decides full vs incremental once per run and shares the events read for it."""

    def __init__(self, api: StripeApi, full_refresh: bool, account: str = "default"):
        self.api = api
        self.account = account  # the `account` of every row this run loads
        self.full_refresh = full_refresh
        self.started_at = int(time.time())
        self._events: list[dict] | None = None
        self._events_since: int | None = None
        self._lock = threading.Lock()
        self._announced: set[str] = set()
        # prices listed in this run, prices invoice lines and items name, and the price lists' completion
        self.listed_prices: set[str] = set()
        self.named_prices: set[str] = set()
        self._price_lists_left = {"prices", "plans"}
        self.price_lists_done = threading.Event()

    def mode(self, resource: str, cursor: int | None) -> str:
        if self.full_refresh:
            reason = "a full refresh was asked for"
        elif cursor is None:
            reason = "first load"
        elif self.started_at - cursor > settings.INCREMENTAL_MAX_AGE_DAYS * 86400:
            days = (self.started_at - cursor) / 86400
            reason = (
                f"the last successful sync was {days:.0f} days ago, older than Stripe's "
                f"{settings.EVENT_WINDOW_DAYS}-day event window: reloading everything"
            )
            logger.warning("stripe %s: %s", resource, reason)
        else:
            return "incremental"
        if resource not in self._announced:
            logger.info("stripe %s: full load (%s)", resource, reason)
            self._announced.add(resource)
        return "full"

    def events(self, since: int | None) -> list[dict]:
        """Events since `since` (None: every event Stripe still keeps), read once per run."""
        with self._lock:
            if self._events is None or (self._events_since is not None and (since or 0) < self._events_since):
                params = {"created": {"gte": since}} if since else {}
                self._events = [event for page in self.api.paginate_split("/v1/events", params) for event in page]
                self._events_since = since or 0
            return [e for e in self._events if since is None or e["created"] >= since]

    def deleted_objects(self, event_type: str, since: int | None) -> list[dict]:
        """The objects of `event_type` (`invoiceitem.deleted`) events since `since`, marked deleted."""
        objects: dict[str, dict] = {}
        for event in self.events(since):
            obj = (event.get("data") or {}).get("object") or {}
            if event.get("type") == event_type and obj.get("id"):
                objects[obj["id"]] = {**obj, "deleted": True}
        return list(objects.values())

    def list_price(self, price_id: str) -> None:
        with self._lock:
            self.listed_prices.add(price_id)

    def price_list_done(self, name: str) -> None:
        """A price list is complete: remember its ids in the source state (known prices are never fetched)."""
        state = dlt.current.source_state()
        with self._lock:
            state["known_prices"] = sorted(set(state.get("known_prices") or []) | self.listed_prices)
            self._price_lists_left.discard(name)
            if not self._price_lists_left:
                self.price_lists_done.set()

    def name_prices(self, objects: Iterable[dict]) -> None:
        ids = {_price_id(obj) for obj in objects}
        ids.discard(None)
        if ids:
            with self._lock:
                self.named_prices |= ids

    def changed_ids(self, object_type: str, since: int) -> list[str]:
        ids: dict[str, None] = {}
        for event in self.events(since):
            obj = (event.get("data") or {}).get("object") or {}
            if obj.get("object") == object_type and obj.get("id"):
                ids[obj["id"]] = None
            # an invoice or subscription event also means its customer may have changed
            if object_type == "customer" and isinstance(obj.get("customer"), str):
                ids[obj["customer"]] = None
        return list(ids)


class Progress:
    """Progress of one resource during a long load: objects, pages (requests) and rate, every
    `every_seconds` and at the end (README "Operating it in Dagster": what a long first load shows)."""

    def __init__(self, name: str, api: StripeApi | None = None, every_seconds: float = 10.0):
        self.name, self.api, self.every = name, api, every_seconds
        self.count, self.start = 0, time.monotonic()
        self.next_report = self.start + every_seconds

    def tick(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now >= self.next_report:
            self.next_report = now + self.every
            rate = self.count / max(now - self.start, 1e-6)
            logger.info("stripe %s: %d objects, %s so far (%.0f objects/s)", self.name, self.count, self._pages(), rate)

    def _pages(self) -> str:
        pages = self.api.pages_of(self.name) if self.api is not None else None
        return f"{pages} pages" if pages is not None else "? pages"

    def done(self) -> None:
        seconds = time.monotonic() - self.start
        pages = self.api.pages_of(self.name) if self.api is not None else None
        # the numbers again, for a caller that collects them (bench/stripe_ingest.py)
        done = {"resource": self.name, "objects": self.count, "requests": pages, "seconds": round(seconds, 2)}
        extra = {"stripe_resource_done": done}
        logger.info("stripe %s: %d objects, %s in %.1fs", self.name, self.count, self._pages(), seconds, extra=extra)


@dlt.source(name="stripe", max_table_nesting=0)
def stripe_source(
    api_key: str = dlt.secrets.value,
    account: str = "default",
    stripe_account: str | None = None,
    api_base: str | None = None,
    full_refresh: bool = False,
    max_rps: float = 25.0,
    concurrency: int = 4,
    max_retries: int = settings.MAX_RETRIES,
    cleaned: CleanedObjects | None = None,
    timeout: float = settings.REQUEST_TIMEOUT_SECONDS,
) -> list[DltResource]:
    """Customers, products, prices, plans, coupons, subscriptions (with canceled ones) and their
    items, invoices with every line, credit notes, and the events Stripe still keeps.

    Args:
        api_key: a secret or restricted key with read access (`SOURCES__STRIPE__API_KEY`).
        api_base: another server speaking Stripe's protocol (an emulator, a proxy); None for Stripe.
        full_refresh: list everything instead of loading changes since the last sync.
        max_rps: the request budget shared by all concurrent fetches (Stripe allows ~100/s live, 25/s test).
        concurrency: threads fetching objects by id, and chains of pages reading each long list at once
            (requests in flight against a slow API: about max_rps x seconds per request).
        max_retries: retries of one request on 429, 5xx or a dropped connection (with backoff).
        cleaned: records the objects stored with NUL characters removed (PostgreSQL cannot store
            them), by Stripe object type; the caller reads the counts after the load.
        timeout: seconds one request may take before it counts as failed (and is retried): STRIPE_TIMEOUT.
        account: the name of this account, in the `account` column of every row (README "Several Stripe accounts").
        stripe_account: a connected account's id (acct_...), sent as the Stripe-Account header; None: the key's own.
    """
    api = StripeApi(
        api_key,
        api_base,
        max_rps=max_rps,
        concurrency=concurrency,
        max_retries=max_retries,
        cleaned=cleaned,
        timeout=timeout,
        stripe_account=stripe_account,
    )
    plan = SyncPlan(api, full_refresh, account)
    resources = [_list_resource(api, plan, name) for name in settings.LISTS]
    resources.append(_events_resource(api, plan))
    return resources


def _keys(name: str, obj: dict) -> dict:
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


KEY = ["account", "id"]
PRICE_HINTS = dlt.mark.make_hints(table_name="prices", write_disposition=MERGE, primary_key=KEY, columns=BASE_COLUMNS)


def _child_hints(table: str, parent_key: str):
    """A table of embedded lists (an invoice's lines, a subscription's items): a row per (account, parent, id),
    all of a parent's rows replaced when the parent is loaded again (merge_key)."""
    return dlt.mark.make_hints(
        table_name=table,
        write_disposition=MERGE,
        primary_key=["account", parent_key, "id"],
        merge_key=["account", parent_key],
        columns={
            "id": {"data_type": "text", "nullable": False},
            **ACCOUNT_COLUMN,
            parent_key: {"data_type": "text", "nullable": False},
            "data": {"data_type": "json"},
            "synced_at": {"data_type": "timestamp"},
            **DLT_COLUMNS,
        },
    )


_CHILD_HINTS = {
    "invoice_lines": _child_hints("invoice_lines", "invoice_id"),
    "subscription_items": _child_hints("subscription_items", "subscription_id"),
}


CHILD_TABLE_OF = {"invoices": "invoice_lines", "subscriptions": "subscription_items"}
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


def _load_id() -> str:
    """The id of the load package being extracted (dlt's context: ask from the resource's own thread)."""
    return dlt.current.load_package_state()["load_id"]


def _rows_of(table: str, objects: Iterable[dict], synced_at: datetime, load_id: str, account: str) -> pa.Table:
    rows = Rows(table, synced_at, load_id, account)
    for obj in objects:
        rows.add(obj, _keys(table, obj))
    return rows.take()


def _complete(api: StripeApi, name: str, objects: list[dict]) -> None:
    """Embedded lines or items past the first 10, fetched into the objects (an object read lean has none)."""
    for obj in objects:
        if isinstance(obj, LeanObject):
            continue
        if name == "invoices":
            field, args = "lines", (f"/v1/invoices/{obj['id']}/lines",)
        elif name == "subscriptions":
            field, args = "items", ("/v1/subscription_items", {"subscription": obj["id"]})
        else:
            return
        embedded = obj.get(field)
        if embedded and embedded.get("has_more"):
            obj[field] = {**embedded, "data": api.complete_list(embedded, *args), "has_more": False}


class Page(NamedTuple):
    """A page of objects turned into rows: their ids, the table's rows and the lines' or items' rows."""

    ids: list[str]
    rows: pa.Table
    children: pa.Table | None


def _split(name: str, obj: dict) -> tuple[dict, None, list[tuple[dict, None]]]:
    """An object as a dict into what it stores (without its embedded lines or items; an invoice keeps
    `lines_count`) and those lines or items, as pages.reader splits an object read lean."""
    if name == "invoices":
        kids = (obj.get("lines") or {}).get("data") or []
        obj = {k: v for k, v in obj.items() if k != "lines"}
        obj["lines_count"] = len(kids)
    elif name == "subscriptions":
        kids = (obj.get("items") or {}).get("data") or []
        obj = {k: v for k, v in obj.items() if k != "items"}
    else:
        kids = []
    return obj, None, [(kid, None) for kid in kids]


def _prepare(api: StripeApi, plan: SyncPlan, name: str, synced_at: datetime, load_id: str, objects: list) -> Page:
    """Objects (dicts, or read lean: pages.LeanObject) into rows: lines or items past the tenth fetched, then
    stored in their own table (without the embedded list in `data`; an invoice keeps `lines_count`). Runs
    where the page was read (paginate_split)."""
    _complete(api, name, objects)
    rows = Rows(name, synced_at, load_id, plan.account)
    child_table = CHILD_TABLE_OF.get(name)
    children = Rows(child_table, synced_at, load_id, plan.account) if child_table else None
    for obj in objects:
        # the object (a dict or its fields read lean), its JSON text (None: the dict's) and its lines or items
        fields, text, kids = (obj.fields, obj.text, obj.kids) if isinstance(obj, LeanObject) else _split(name, obj)
        if name == "invoices":
            plan.name_prices(kid for kid, _ in kids)
        elif name in ("prices", "plans"):
            plan.list_price(fields["id"])
        elif name == "invoiceitems":
            plan.name_prices([fields])
        rows.add(fields, _keys(name, fields), text)
        if children is not None:
            parent = {CHILD_KEY[child_table]: fields["id"]}
            for kid, kid_text in kids:
                children.add(kid, parent, kid_text)
    return Page([obj["id"] for obj in objects], rows.take(), children.take() if children is not None else None)


def _tables(name: str, pages: Iterable[Page], progress: Progress, seen: set[str] | None = None) -> Iterator:
    """The pages' rows handed to dlt in Arrow tables of about BATCH_SIZE rows, each followed by its objects'
    lines or items (merged per parent)."""
    rows: list[pa.Table] = []
    children: list[pa.Table] = []
    count = 0

    def flush() -> Iterator:
        if rows:
            yield pa.concat_tables(rows)
        if children:
            hints = _CHILD_HINTS[CHILD_TABLE_OF[name]]
            yield dlt.mark.with_hints(pa.concat_tables(children), hints, create_table_variant=True)
        rows.clear()
        children.clear()

    for page in pages:
        progress.tick(len(page.ids))
        if seen is not None:
            seen.update(page.ids)
        rows.append(page.rows)
        count += page.rows.num_rows
        if page.children is not None and page.children.num_rows:
            children.append(page.children)
        if count >= BATCH_SIZE:
            yield from flush()
            count = 0
    yield from flush()


def _batched(
    api: StripeApi, plan: SyncPlan, name: str, objects: Iterable[dict], synced_at: datetime, progress, load_id: str
) -> Iterator:
    """Objects (retrieved by id, deleted ones from events) into rows, as the pages of a list are."""
    objects = iter(objects)
    chunks = iter(lambda: list(islice(objects, BATCH_SIZE)), [])
    yield from _tables(name, (_prepare(api, plan, name, synced_at, load_id, chunk) for chunk in chunks), progress)


def _list_resource(api: StripeApi, plan: SyncPlan, name: str) -> DltResource:
    path, params, object_type = settings.LISTS[name]

    def fetch() -> Iterator:
        state = dlt.current.source_state().setdefault("cursors", {})
        cursor = state.get(name)
        synced_at = _ts(plan.started_at)
        load_id = _load_id()
        progress = Progress(name, api)
        prepare = functools.partial(_prepare, api, plan, name, synced_at, load_id)
        parse = lean_pages.reader(name)  # pages read lean: objects kept as JSON text (ingestion/stripe/pages.py)

        def pages(list_params: dict) -> Iterator[Page]:
            if name in settings.SPLIT_LISTS:
                return api.paginate_split(
                    path,
                    list_params,
                    missing_ok=True,
                    prepare=prepare,
                    parse=parse,
                    time_field=settings.time_field(name),
                )
            objects = api.paginate(path, list_params, missing_ok=True, parse=parse)
            return (prepare(chunk) for chunk in iter(lambda: list(islice(objects, settings.PAGE_SIZE)), []))

        if plan.mode(name, cursor) == "full":
            yield from _tables(name, pages(params), progress)
        else:
            since = cursor - settings.CURSOR_OVERLAP_SECONDS
            seen: set[str] = set()
            yield from _tables(name, pages({**params, "created": {"gte": since}}), progress, seen)
            changed = [i for i in plan.changed_ids(object_type, since) if i not in seen]
            changed_objects = api.retrieve_many(
                settings.RETRIEVE_PATHS[object_type], changed, settings.RETRIEVE_PARAMS.get(object_type)
            )
            yield from _batched(api, plan, name, changed_objects, synced_at, progress, load_id)
        if name in settings.DELETED_EVENTS:
            since = None if plan.mode(name, cursor) == "full" else cursor - settings.CURSOR_OVERLAP_SECONDS
            deleted = plan.deleted_objects(settings.DELETED_EVENTS[name], since)
            yield from _batched(api, plan, name, deleted, synced_at, progress, load_id)
        if name in ("prices", "plans"):
            plan.price_list_done(name)
        if name in ("invoices", "invoiceitems"):
            yield from _unlisted_prices(api, plan, synced_at)
        progress.done()
        state[name] = plan.started_at

    return dlt.resource(
        fetch, name=name, write_disposition=MERGE, primary_key=KEY, columns=BASE_COLUMNS, parallelized=True
    )


def _unlisted_prices(api: StripeApi, plan: SyncPlan, synced_at: datetime) -> Iterator:
    """Prices invoice lines or items name that no price list returned, in this run or before (source
    state), fetched by id into `prices` (a 404: nothing to load; the reconciliation reports the lines)."""
    plan.price_lists_done.wait(settings.PRICE_LISTS_WAIT_SECONDS)
    state = dlt.current.source_state()
    with plan._lock:
        known = set(state.get("known_prices") or []) | plan.listed_prices
        unknown = sorted(plan.named_prices - known)
        plan.listed_prices |= set(unknown)  # the other resource does not fetch them again
    if not unknown:
        return
    fetched = list(api.retrieve_many(settings.RETRIEVE_PATHS["price"], unknown))
    with plan._lock:
        state["known_prices"] = sorted(set(state.get("known_prices") or []) | {obj["id"] for obj in fetched})
    logger.info("stripe prices: %d named by invoices but not listed, %d fetched by id", len(unknown), len(fetched))
    if fetched:
        rows = _rows_of("prices", fetched, synced_at, _load_id(), plan.account)
        yield dlt.mark.with_hints(rows, PRICE_HINTS, create_table_variant=True)


def _events_resource(api: StripeApi, plan: SyncPlan) -> DltResource:
    def fetch() -> Iterator:
        state = dlt.current.source_state().setdefault("cursors", {})
        cursor = state.get("events")
        since = None if plan.mode("events", cursor) == "full" else cursor - settings.CURSOR_OVERLAP_SECONDS
        synced_at = _ts(plan.started_at)
        events = plan.events(since)
        load_id = _load_id()
        for start in range(0, len(events), BATCH_SIZE):
            yield _rows_of("events", events[start : start + BATCH_SIZE], synced_at, load_id, plan.account)
        logger.info("stripe events: %d events", len(events))
        state["events"] = plan.started_at

    return dlt.resource(
        fetch,
        name="events",
        write_disposition=MERGE,
        primary_key=KEY,
        columns=BASE_COLUMNS,
        parallelized=True,
    )
