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

import functools
import logging
from collections.abc import Iterable, Iterator
from datetime import datetime
from itertools import islice
from typing import NamedTuple

import dlt
import pyarrow as pa
from dlt.sources import DltResource

from ingestion.cleaning import CleanedObjects
from ingestion.raw_tables import Index, RawTables
from ingestion.stripe import pages as lean_pages
from ingestion.stripe import settings
from ingestion.stripe.helpers import StripeApi, StripeAuthError, StripeFetchError
from ingestion.stripe.pages import LeanObject
from ingestion.stripe.plan import SyncPlan
from ingestion.stripe.progress import Progress
from ingestion.stripe.rows import (
    BATCH_SIZE,
    CHILD_KEY,
    DLT_COLUMNS,
    Rows,
    current_load_id,
    rows_of,
    timestamp_of,
    typed_keys,
)

__all__ = ["stripe_source", "StripeAuthError", "StripeFetchError", "TABLES"]

logger = logging.getLogger("saas_metrics.ingestion.stripe")

MERGE = {"disposition": "merge", "strategy": "delete-insert"}
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
        rows.add(fields, typed_keys(name, fields), text)
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
        synced_at = timestamp_of(plan.started_at)
        load_id = current_load_id()
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
        rows = rows_of("prices", fetched, synced_at, current_load_id(), plan.account)
        yield dlt.mark.with_hints(rows, PRICE_HINTS, create_table_variant=True)


def _events_resource(api: StripeApi, plan: SyncPlan) -> DltResource:
    def fetch() -> Iterator:
        state = dlt.current.source_state().setdefault("cursors", {})
        cursor = state.get("events")
        since = None if plan.mode("events", cursor) == "full" else cursor - settings.CURSOR_OVERLAP_SECONDS
        synced_at = timestamp_of(plan.started_at)
        events = plan.events(since)
        load_id = current_load_id()
        for start in range(0, len(events), BATCH_SIZE):
            yield rows_of("events", events[start : start + BATCH_SIZE], synced_at, load_id, plan.account)
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
