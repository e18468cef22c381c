"""How tests/stripe_spec/<version>.json was made: the object schemas of Stripe's OpenAPI spec, compacted.

Stripe generates the TypeScript declarations of its Node library from its OpenAPI spec ("File generated from our
OpenAPI spec"; the package's OPENAPI_VERSION names the spec's tag in stripe/openapi). They keep, for every field of
every object, what the spec says and this project checks: whether the field is always sent (`required` in the
spec; optional fields end in `?`), whether it may be null (`nullable`: `| null`), its type and, for a closed enum,
its values. This reads those declarations for the objects the pipeline loads and writes them as data:

    npm pack stripe@21.0.1 && tar xzf stripe-21.0.1.tgz
    python tests/stripe_spec/make_schema.py package > tests/stripe_spec/2026-03-25.dahlia.json

The output: {"source": {...}, "objects": {"invoiceitem": "InvoiceItem", ...},
"types": {"InvoiceItem": {"amount": {"required": true, "nullable": false, "type": ["number"]}, ...}}}, where a
type is a primitive (string, number, boolean, true, false), a quoted enum value ('day'), `any` (metadata and
other free-form objects), `list:<type>` (a Stripe list of that type), `array:<type>` or another entry of "types".
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# the files of the objects the pipeline loads (and the objects they embed), object type -> interface
OBJECTS = {
    "customer": "Customer",
    "product": "Product",
    "price": "Price",
    "plan": "Plan",
    "coupon": "Coupon",
    "discount": "Discount",
    "subscription": "Subscription",
    "subscription_item": "SubscriptionItem",
    "invoice": "Invoice",
    "line_item": "InvoiceLineItem",
    "invoiceitem": "InvoiceItem",
    "credit_note": "CreditNote",
    "event": "EventBase",  # each event type's interface (EventTypes.d.ts) adds only its `type` and data
    "payment_method": "PaymentMethod",
}
FILES = [
    "Customers.d.ts",
    "Products.d.ts",
    "Prices.d.ts",
    "Plans.d.ts",
    "Coupons.d.ts",
    "Discounts.d.ts",
    "Subscriptions.d.ts",
    "SubscriptionItems.d.ts",
    "Invoices.d.ts",
    "InvoiceLineItems.d.ts",
    "InvoiceItems.d.ts",
    "CreditNotes.d.ts",
    "Events.d.ts",
    "PaymentMethods.d.ts",
    "Shared.d.ts",
]
FREE_FORM = {"Metadata", "Stripe.Metadata", "MetadataParam", "Stripe.Emptyable"}


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def _split_top(text: str, sep: str) -> list[str]:
    """Split on `sep` outside <>, (), {} and quotes."""
    parts, depth, quote, current = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "<({":
            depth += 1
        elif ch in ">)}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def parse(text: str) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """Interfaces (qualified name -> fields) and type aliases (qualified name -> union members) of a file."""
    text = _strip_comments(text)
    interfaces: dict[str, dict] = {}
    aliases: dict[str, list[str]] = {}
    tokens = re.finditer(r"\b(namespace|interface)\s+([\w.]+)[^{]*\{|\btype\s+(\w+)\s*=\s*([^;]*);|\}", text)
    stack: list[tuple[str, str]] = []  # (kind, name)
    position = 0
    for match in tokens:
        if match.start() < position:
            continue
        scope = ".".join(name for kind, name in stack if kind == "namespace" and name != "Stripe")
        if match.group(1) == "namespace":
            stack.append(("namespace", match.group(2)))
        elif match.group(1) == "interface":
            name = ".".join(filter(None, [scope, match.group(2)]))
            depth, end = 1, match.end()
            while depth:
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                end += 1
            body = text[match.end() : end - 1]
            interfaces[name] = _fields(body)
            position = end
        elif match.group(3):
            name = ".".join(filter(None, [scope, match.group(3)]))
            aliases[name] = _split_top(" ".join(match.group(4).split()), "|")
        elif stack:
            stack.pop()
    return interfaces, aliases


def _fields(body: str) -> dict:
    fields = {}
    for declaration in _split_top(" ".join(body.split()), ";"):
        match = re.fullmatch(r"(\w+)(\?)?\s*:\s*(.+)", declaration)
        if match:
            members = _split_top(match.group(3), "|")
            fields[match.group(1)] = {"optional": bool(match.group(2)), "members": members}
    return fields


def _resolve(member: str, scope: str, interfaces: dict, aliases: dict) -> list[str]:
    """A union member as schema types: primitives, enum values, `any`, list:/array: of a type, or an interface."""
    member = member.strip()
    if member.startswith("(") and member.endswith(")"):
        return [t for m in _split_top(member[1:-1], "|") for t in _resolve(m, scope, interfaces, aliases)]
    if member in ("string", "number", "boolean", "true", "false", "Decimal", "Stripe.Decimal"):
        return ["string" if "Decimal" in member else member]
    if member.startswith("'"):
        return [member]
    if member in ("null", "void"):
        return []
    if member in FREE_FORM or member.startswith(("Stripe.Emptyable", "Record<", "{")) or member in ("any", "object"):
        return ["any"]
    if member in ("OtherString", "Stripe.OtherString"):
        return ["string"]
    match = re.fullmatch(r"(?:Stripe\.)?(ApiList|Array)<(.+)>", member)
    if match:
        inner = [t for m in _split_top(match.group(2), "|") for t in _resolve(m, scope, interfaces, aliases)]
        return [f"{'list' if match.group(1) == 'ApiList' else 'array'}:{t}" for t in inner]
    name = member.removeprefix("Stripe.")
    # the nearest scope that declares it (InvoiceItem.Parent inside InvoiceItem, SubscriptionDetails inside Parent)
    parts = scope.split(".") if scope else []
    for n in range(len(parts), -1, -1):
        candidate = ".".join([*parts[:n], name])
        if candidate in interfaces:
            return [candidate] if interfaces[candidate] else ["any"]  # an empty interface: any object
        if candidate in aliases:
            return [t for m in aliases[candidate] for t in _resolve(m, ".".join(parts[:n]), interfaces, aliases)]
    return ["any"]  # an object of a file not read (Stripe.Account, Stripe.TestHelpers.TestClock): expanded ids


def build(package: Path) -> dict:
    interfaces: dict[str, dict] = {}
    aliases: dict[str, list[str]] = {}
    for name in FILES:
        path = package / "types" / name
        if path.exists():
            found, named = parse(path.read_text())
            interfaces.update(found)
            aliases.update(named)
    types = {}
    for name, fields in interfaces.items():
        types[name] = {
            field: {
                "required": not spec["optional"],
                "nullable": "null" in spec["members"],
                "type": sorted({t for m in spec["members"] for t in _resolve(m, name, interfaces, aliases)}),
            }
            for field, spec in fields.items()
        }
    package_json = json.loads((package / "package.json").read_text())
    api_version = re.search(r"ApiVersion = '([^']+)'", (package / "cjs" / "apiVersion.js").read_text()).group(1)
    source = {
        "spec": "Stripe's OpenAPI spec, stripe/openapi tag " + (package / "OPENAPI_VERSION").read_text().strip(),
        "api_version": api_version,
        "read_from": f"npm package stripe@{package_json['version']} (types/*.d.ts, generated from that spec)",
        "licence": package_json.get("license"),
    }
    return {"source": source, "objects": OBJECTS, "types": dict(sorted(types.items()))}


if __name__ == "__main__":
    json.dump(build(Path(sys.argv[1])), sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")
