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

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

import dlt
from dlt.sources import DltResource

from ingestion.cleaning import CleanedObjects
from ingestion.stripe import settings
from ingestion.stripe.helpers import StripeApi, StripeAuthError, StripeFetchError

__all__ = ["stripe_source", "StripeAuthError", "StripeFetchError"]

logger = logging.getLogger("saas_metrics.ingestion.stripe")

MERGE = {"disposition": "merge", "strategy": "delete-insert"}
# Typed key columns (customer_id, status, ...) are inferred from the rows; `data` holds the object.
BASE_COLUMNS = {
    "id": {"data_type": "text", "nullable": False},
    "created": {"data_type": "timestamp"},
    "data": {"data_type": "json"},
    "synced_at": {"data_type": "timestamp"},
}


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

    def __init__(self, api: StripeApi, full_refresh: bool):
        self.api = api
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
                self._events = list(self.api.paginate("/v1/events", params))
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
        logger.info(
            "stripe %s: %d objects, %s in %.1fs", self.name, self.count, self._pages(), time.monotonic() - self.start
        )


@dlt.source(name="stripe", max_table_nesting=0)
def stripe_source(
    api_key: str = dlt.secrets.value,
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
        concurrency: threads fetching objects by id.
        max_retries: retries of one request on 429, 5xx or a dropped connection (with backoff).
        cleaned: records the objects stored with NUL characters removed (PostgreSQL cannot store
            them), by Stripe object type; the caller reads the counts after the load.
        timeout: seconds one request may take before it counts as failed (and is retried): STRIPE_TIMEOUT.
    """
    api = StripeApi(
        api_key,
        api_base,
        max_rps=max_rps,
        concurrency=concurrency,
        max_retries=max_retries,
        cleaned=cleaned,
        timeout=timeout,
    )
    plan = SyncPlan(api, full_refresh)
    resources = [_list_resource(api, plan, name) for name in settings.LISTS]
    resources.append(_events_resource(api, plan))
    return resources


def _row(name: str, obj: dict, synced_at: datetime) -> dict:
    row = {"id": obj["id"], "created": _ts(obj.get("created")), "data": obj, "synced_at": synced_at}
    if name in ("subscriptions", "invoices", "credit_notes"):
        row["customer_id"] = _ref(obj.get("customer"))
    if name in ("subscriptions", "invoices"):
        row["status"] = obj.get("status")
    if name == "invoices":
        parent = (obj.get("parent") or {}).get("subscription_details") or {}
        row["subscription_id"] = _ref(parent.get("subscription")) or _ref(obj.get("subscription"))
    if name == "credit_notes":
        row["invoice_id"] = _ref(obj.get("invoice"))
    return row


PRICE_HINTS = dlt.mark.make_hints(table_name="prices", write_disposition=MERGE, primary_key="id", columns=BASE_COLUMNS)


_CHILD_HINTS = {
    "invoice_lines": dlt.mark.make_hints(
        table_name="invoice_lines",
        write_disposition=MERGE,
        primary_key=["invoice_id", "id"],
        merge_key="invoice_id",
        columns={
            "id": {"data_type": "text", "nullable": False},
            "invoice_id": {"data_type": "text", "nullable": False},
            "data": {"data_type": "json"},
            "synced_at": {"data_type": "timestamp"},
        },
    ),
    "subscription_items": dlt.mark.make_hints(
        table_name="subscription_items",
        write_disposition=MERGE,
        primary_key=["subscription_id", "id"],
        merge_key="subscription_id",
        columns={
            "id": {"data_type": "text", "nullable": False},
            "subscription_id": {"data_type": "text", "nullable": False},
            "data": {"data_type": "json"},
            "synced_at": {"data_type": "timestamp"},
        },
    ),
}


CHILD_TABLE_OF = {"invoices": "invoice_lines", "subscriptions": "subscription_items"}
BATCH_SIZE = 100  # rows handed to dlt at once: dlt's per-item overhead dominates one by one


def _expand(api: StripeApi, name: str, obj: dict, synced_at: datetime) -> tuple[dict, list[dict]]:
    """The object's row, plus its complete lines or items as rows of their own table."""
    if name == "invoices":
        lines = api.complete_list(obj.get("lines"), f"/v1/invoices/{obj['id']}/lines")
        obj = {k: v for k, v in obj.items() if k != "lines"}
        obj["lines_count"] = len(lines)
        children = [{"id": ln["id"], "invoice_id": obj["id"], "data": ln, "synced_at": synced_at} for ln in lines]
        return _row(name, obj, synced_at), children
    if name == "subscriptions":
        items = api.complete_list(obj.get("items"), "/v1/subscription_items", {"subscription": obj["id"]})
        obj = {k: v for k, v in obj.items() if k != "items"}
        children = [{"id": it["id"], "subscription_id": obj["id"], "data": it, "synced_at": synced_at} for it in items]
        return _row(name, obj, synced_at), children
    return _row(name, obj, synced_at), []


def _batched(
    api: StripeApi, plan: SyncPlan, name: str, objects: Iterable[dict], synced_at: datetime, progress
) -> Iterator:
    """Rows in batches of BATCH_SIZE, each followed by its objects' child rows (merged per parent)."""
    rows: list[dict] = []
    children: list[dict] = []

    def flush() -> Iterator:
        if rows:
            yield list(rows)
        if children:
            yield dlt.mark.with_hints(list(children), _CHILD_HINTS[CHILD_TABLE_OF[name]], create_table_variant=True)
        rows.clear()
        children.clear()

    for obj in objects:
        progress.tick()
        row, kids = _expand(api, name, obj, synced_at)
        if name in ("prices", "plans"):
            plan.list_price(obj["id"])
        elif name == "invoiceitems":
            plan.name_prices([obj])
        elif name == "invoices":
            plan.name_prices(kid["data"] for kid in kids)
        rows.append(row)
        children.extend(kids)
        if len(rows) >= BATCH_SIZE:
            yield from flush()
    yield from flush()


def _list_resource(api: StripeApi, plan: SyncPlan, name: str) -> DltResource:
    path, params, object_type = settings.LISTS[name]

    def fetch() -> Iterator:
        state = dlt.current.source_state().setdefault("cursors", {})
        cursor = state.get(name)
        synced_at = _ts(plan.started_at)
        progress = Progress(name, api)
        if plan.mode(name, cursor) == "full":
            yield from _batched(api, plan, name, api.paginate(path, params, missing_ok=True), synced_at, progress)
        else:
            since = cursor - settings.CURSOR_OVERLAP_SECONDS
            seen: set[str] = set()

            def created_since() -> Iterator[dict]:
                for obj in api.paginate(path, {**params, "created": {"gte": since}}, missing_ok=True):
                    seen.add(obj["id"])
                    yield obj

            yield from _batched(api, plan, name, created_since(), synced_at, progress)
            changed = [i for i in plan.changed_ids(object_type, since) if i not in seen]
            changed_objects = api.retrieve_many(
                settings.RETRIEVE_PATHS[object_type], changed, settings.RETRIEVE_PARAMS.get(object_type)
            )
            yield from _batched(api, plan, name, changed_objects, synced_at, progress)
        if name in settings.DELETED_EVENTS:
            since = None if plan.mode(name, cursor) == "full" else cursor - settings.CURSOR_OVERLAP_SECONDS
            deleted = plan.deleted_objects(settings.DELETED_EVENTS[name], since)
            yield from _batched(api, plan, name, deleted, synced_at, progress)
        if name in ("prices", "plans"):
            plan.price_list_done(name)
        if name in ("invoices", "invoiceitems"):
            yield from _unlisted_prices(api, plan, synced_at)
        progress.done()
        state[name] = plan.started_at

    return dlt.resource(
        fetch, name=name, write_disposition=MERGE, primary_key="id", columns=BASE_COLUMNS, parallelized=True
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
        yield dlt.mark.with_hints(
            [_row("prices", obj, synced_at) for obj in fetched], PRICE_HINTS, create_table_variant=True
        )


def _events_resource(api: StripeApi, plan: SyncPlan) -> DltResource:
    def fetch() -> Iterator:
        state = dlt.current.source_state().setdefault("cursors", {})
        cursor = state.get("events")
        since = None if plan.mode("events", cursor) == "full" else cursor - settings.CURSOR_OVERLAP_SECONDS
        synced_at = _ts(plan.started_at)
        events = plan.events(since)
        for start in range(0, len(events), BATCH_SIZE):
            yield [
                {
                    "id": event["id"],
                    "created": _ts(event["created"]),
                    "type": event.get("type"),
                    "data": event,
                    "synced_at": synced_at,
                }
                for event in events[start : start + BATCH_SIZE]
            ]
        logger.info("stripe events: %d events", len(events))
        state["events"] = plan.started_at

    return dlt.resource(
        fetch,
        name="events",
        write_disposition=MERGE,
        primary_key="id",
        columns=BASE_COLUMNS,
        parallelized=True,
    )
