"""What one run of an account loads: full or incremental, decided once, and the events read for it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

import dlt

from ingestion.stripe import settings
from ingestion.stripe.helpers import StripeApi
from ingestion.stripe.rows import price_id_of

logger = logging.getLogger("saas_metrics.ingestion.stripe")


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
        ids = {price_id_of(obj) for obj in objects}
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
