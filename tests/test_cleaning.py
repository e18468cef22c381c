"""NUL characters removed before a load (ingestion/cleaning.py): values and keys, nested, counted."""

from __future__ import annotations

from ingestion.cleaning import CleanedObjects, strip_nul
from ingestion.product.helpers import parse_column_map, to_event


def test_strip_nul_cleans_values_and_keys_at_any_depth_and_records_the_objects():
    found = CleanedObjects()
    invoice = {
        "id": "in_1",
        "object": "invoice",
        "lines": {"object": "list", "data": [{"id": "il_1", "object": "line_item", "description": "a\x00b"}]},
        "metadata": {"k\x00": ["x", "y\x00"]},
        "amount": 5,
    }
    cleaned, changed = strip_nul(invoice, found)
    assert changed
    assert cleaned["lines"]["data"][0]["description"] == "ab"
    assert cleaned["metadata"] == {"k": ["x", "y"]}
    assert invoice["metadata"] == {"k\x00": ["x", "y\x00"]}  # the input is not modified
    assert found.counts() == {"invoice": 1, "line_item": 1}
    # an object fetched again counts once; an event's own object is not counted (the event is stored)
    strip_nul(invoice, found)
    strip_nul(
        {"id": "evt_1", "object": "event", "data": {"object": {"id": "cus_1", "object": "customer", "name": "\x00"}}},
        found,
    )
    assert found.counts() == {"invoice": 1, "line_item": 1, "event": 1}
    assert found.total() == 3


def test_strip_nul_returns_clean_values_unchanged():
    value = {"id": "cus_1", "object": "customer", "metadata": {"a": "b"}, "items": [1, None, 2.5]}
    found = CleanedObjects()
    assert strip_nul(value, found) == (value, False)
    assert strip_nul(value, found)[0] is value
    assert found.counts() == {}


def test_product_events_from_any_reader_lose_their_nuls():
    """A row from a SQL table or a Parquet file (values, not JSON text): every column and the properties."""
    found = CleanedObjects()
    raw = {
        "event_id": "e\x001",
        "account_id": "acct",
        "user_id": "u\x00",
        "event_name": "login",
        "properties": {"role": "ad\x00min"},
        "timestamp": "2026-01-01T00:00:00Z",
    }
    row = to_event(raw, parse_column_map(None), "test", found)
    assert (row["event_id"], row["user_id"], row["properties"]) == ("e1", "u", {"role": "admin"})
    assert found.counts() == {"event": 1}
