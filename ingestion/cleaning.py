"""Text PostgreSQL cannot store, removed before a load instead of failing it.

PostgreSQL refuses the NUL character (U+0000) in `text` and `jsonb` ("unsupported Unicode escape
sequence"), and one NUL in one string - a Stripe description, a metadata value, a product
event's property - used to fail the whole load. Every source removes it (from values and keys)
and counts the objects it changed, so the run's metadata shows how many were stored altered.
"""

from __future__ import annotations

import threading
from collections import defaultdict

NUL = "\x00"
# how a NUL appears in JSON text (JSON cannot carry it raw): a cheap test of a whole response or line
NUL_IN_JSON = "\\u0000"


def strip_nul(value, found: CleanedObjects | None = None):
    """`value` without NUL characters in any string or dict key, and whether any was removed.

    Unchanged values are returned as they are (no copy). With `found`, every Stripe-like object
    (a dict with string `object` and `id`) that had a NUL in it is recorded under its kind; the
    objects an event carries are not (the event is what gets stored)."""
    if isinstance(value, str):
        if NUL in value:
            return value.replace(NUL, ""), True
        return value, False
    if isinstance(value, dict):
        kind, object_id = value.get("object"), value.get("id")
        is_object = isinstance(kind, str) and isinstance(object_id, str)
        inner = None if is_object and kind == "event" else found
        cleaned, changed = {}, False
        for key, item in value.items():
            new_item, item_changed = strip_nul(item, inner)
            if isinstance(key, str) and NUL in key:
                key, item_changed = key.replace(NUL, ""), True
            cleaned[key] = new_item
            changed = changed or item_changed
        if not changed:
            return value, False
        if is_object and found is not None:
            found.add(kind, cleaned["id"])
        return cleaned, True
    if isinstance(value, list | tuple):
        items = [strip_nul(item, found) for item in value]
        if not any(changed for _, changed in items):
            return value, False
        return [item for item, _ in items], True
    return value, False


class CleanedObjects:
    """The objects of one load that had NUL characters removed, by kind (thread-safe; an object
    fetched twice counts once)."""

    def __init__(self) -> None:
        self._ids: dict[str, set[str]] = defaultdict(set)
        self._lock = threading.Lock()

    def add(self, kind: str, object_id: str) -> None:
        with self._lock:
            self._ids[kind].add(object_id)

    def count(self, kind: str) -> int:
        with self._lock:
            return len(self._ids.get(kind, ()))

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {kind: len(ids) for kind, ids in self._ids.items()}

    def total(self) -> int:
        return sum(self.counts().values())
