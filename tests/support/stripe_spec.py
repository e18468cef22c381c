"""Objects checked against Stripe's OpenAPI spec of an API version (tests/stripe_spec/<version>.json, made by
tests/stripe_spec/make_schema.py): fields Stripe never sends, fields it always sends, nulls and types."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

SPECS = Path(__file__).parent.parent / "stripe_spec"
# Where recordings (which beat the spec) show Stripe answering otherwise, by spec type: fields it sends that the
# spec does not list (embedded lists' `total_count`; a one-item subscription's legacy `plan` and `quantity`,
# pay/incomplete_dahlia), and fields the spec marks always sent that it leaves out (an invoice line's
# `subscription`, absent from every line recorded in 2026-03-25.dahlia)
RECORDED_EXTRAS = {"list": {"total_count"}, "Subscription": {"plan", "quantity"}}
RECORDED_ABSENT = {"InvoiceLineItem": {"subscription"}}
LIST_FIELDS = {"object", "data", "has_more", "url"}


@cache
def spec(version: str) -> dict:
    return json.loads((SPECS / f"{version}.json").read_text())


def problems(obj: dict, version: str) -> list[str]:
    """What in `obj` (a Stripe object, `object` naming its type) the spec of `version` does not allow, each as
    "<type>.<path>: <what>"; an empty list when it conforms."""
    schema = spec(version)
    type_name = schema["objects"].get(obj.get("object"))
    if type_name is None:
        return [f"{obj.get('object')!r}: not an object the spec file holds"]
    return _check(obj, type_name, schema["types"], obj["object"])


def _check(obj: dict, type_name: str, types: dict, path: str) -> list[str]:
    fields = types[type_name]
    found = []
    for key, value in obj.items():
        if key not in fields:
            if key not in RECORDED_EXTRAS.get(type_name, ()):
                found.append(f"{path}.{key}: not in the spec")
            continue
        found += _value(value, fields[key], types, f"{path}.{key}")
    absent_ok = RECORDED_ABSENT.get(type_name, set())
    found += [
        f"{path}.{key}: missing (always sent)"
        for key, f in fields.items()
        if f["required"] and key not in obj and key not in absent_ok
    ]
    return found


def _value(value, field: dict, types: dict, path: str) -> list[str]:
    if value is None:
        return [] if field["nullable"] else [f"{path}: null, not nullable"]
    allowed = field["type"]
    if not allowed or "any" in allowed:
        return []
    best = None
    for kind in allowed:
        found = _matches(value, kind, types, path)
        if not found:
            return []
        if best is None or len(found) < len(best):
            best = found
    return best


def _matches(value, kind: str, types: dict, path: str) -> list[str]:
    """Problems of `value` read as `kind` ([] when it is one)."""
    wrong = [f"{path}: {type(value).__name__} {str(value)[:40]!r} is not {kind}"]
    if kind.startswith("'"):
        return [] if value == kind.strip("'") else wrong
    if kind == "string":
        return [] if isinstance(value, str) else wrong
    if kind == "number":
        return [] if isinstance(value, int | float) and not isinstance(value, bool) else wrong
    if kind in ("boolean", "true", "false"):
        ok = isinstance(value, bool) and (kind == "boolean" or value == (kind == "true"))
        return [] if ok else wrong
    if kind.startswith("array:"):
        if not isinstance(value, list):
            return wrong
        inner = {"type": [kind.removeprefix("array:")], "nullable": False}
        return [p for i, item in enumerate(value) for p in _value(item, inner, types, f"{path}[{i}]")]
    if kind.startswith("list:"):
        if not isinstance(value, dict) or value.get("object") != "list":
            return wrong
        extra = set(value) - LIST_FIELDS - RECORDED_EXTRAS["list"]
        found = [f"{path}.{key}: not in the spec" for key in sorted(extra)]
        found += [f"{path}.{key}: missing (always sent)" for key in sorted(LIST_FIELDS - set(value))]
        inner = {"type": [kind.removeprefix("list:")], "nullable": False}
        return found + [p for i, item in enumerate(value.get("data") or []) for p in _value(item, inner, types, path)]
    if kind in types:
        return _check(value, kind, types, path) if isinstance(value, dict) else wrong
    return []
