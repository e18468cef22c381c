"""Recorded real Stripe responses (tests/recordings/, provenance in tests/recordings/PROVENANCE.md) as an account
the Stripe-protocol server serves: every object in the last state a recording shows, its JSON as recorded."""

from __future__ import annotations

import json
from pathlib import Path

from saas_metrics.demo.store import Store

RECORDINGS = Path(__file__).parent.parent / "recordings"


def recording(name: str) -> dict:
    """A recording file: {"source": provenance, "interactions": [{method, path, stripe_version, status, body}]}."""
    return json.loads((RECORDINGS / f"{name}.json").read_text())


def _nested(obj: dict):
    """The objects a recorded object carries expanded, as Stripe sent them: a subscription's latest invoice and
    its items' prices, an invoice's or subscription's discounts."""
    if obj.get("object") == "subscription":
        if isinstance(obj.get("latest_invoice"), dict):
            yield obj["latest_invoice"]
        for item in (obj.get("items") or {}).get("data") or []:
            if isinstance(item.get("price"), dict):
                yield item["price"]
    for discount in obj.get("discounts") or []:
        if isinstance(discount, dict):
            yield discount


def recorded_objects(names: list[str]) -> list[dict]:
    """The last recorded state of every object of the recordings (responses in recorded order)."""
    latest: dict[tuple[str, str], dict] = {}
    for name in names:
        for interaction in recording(name)["interactions"]:
            if interaction["status"] != 200:
                continue
            obj = json.loads(interaction["body"])
            for found in [*_nested(obj), obj]:
                if found.get("id") and found.get("object"):
                    latest[(found["object"], found["id"])] = found
    return list(latest.values())


def recorded_store(path: Path, names: list[str]) -> Store:
    """A store of the recordings' objects, served over Stripe's protocol exactly as recorded."""
    store = Store(path)
    store.put_many(recorded_objects(names))
    return store
