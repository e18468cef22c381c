"""A list page read lean: each object kept as its JSON text, only the fields the rows need decoded.

Parsing a page of 100 invoices into dicts made tens of thousands of dicts and lists, and the garbage
collector's passes over them (with the pages still being processed, most survived into the oldest
generation) took more of the load's CPU than anything else: with the parsing itself, most of the 9 ms of
CPU per request that kept the load below its request budget. A page read here is split with msgspec into
the raw JSON text of each object, which is what the `data` column stores, and each object's id, `created`
and the few fields its key columns or the prices named are read from (FIELDS) are decoded on their own. An
invoice's embedded lines and a subscription's items are cut out of its text into rows of their own.

Anything unexpected falls back to the dict path, so the rows stay the same: a page that does not decode as
expected (`reader` raises msgspec's error: StripeApi reads the page with orjson), a response with an escaped
NUL character (StripeApi cleans it as dicts, see ingestion/cleaning.py), and an invoice or subscription
whose embedded list has more rows to page (handed on as a dict, its rows past the tenth fetched as before).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from msgspec import Raw, Struct


class Fields(Struct, gc=False):
    """The fields of an object that the rows read, answering `obj["id"]` and `obj.get("customer")` as a dict
    does (a field absent and a field null both read as None). A field not in FIELDS is an error, not None:
    the key columns must not silently differ from the dict path's."""

    id: str
    created: Any = None

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self.__struct_fields__:
            raise KeyError(f"{key!r} is not read from a lean page: add it to ingestion.stripe.pages.FIELDS")
        value = getattr(self, key)
        return default if value is None else value


PRICE_FIELDS = ("pricing", "price", "plan")  # the price an invoice line or item names (rows.price_id_of)
# Fields read per table besides id and created: those rows.typed_keys (typed key columns) and price_id_of read.
FIELDS: dict[str, tuple[str, ...]] = {
    "subscriptions": ("customer", "status"),
    "invoices": ("customer", "status", "parent", "subscription"),
    "credit_notes": ("customer", "invoice"),
    "invoiceitems": ("date", *PRICE_FIELDS),  # `date`: an invoice item has no `created` (settings.TIME_FIELDS)
    "invoice_lines": PRICE_FIELDS,
}
# the embedded list an object's text loses (its rows go to a table of their own), that table, and the count kept
EMBEDDED = {
    "invoices": ("lines", "invoice_lines", "lines_count"),
    "subscriptions": ("items", "subscription_items", None),
}


def _fields_type(table: str) -> type[Fields]:
    return msgspec.defstruct(
        f"{table}_fields", [(name, Any, None) for name in FIELDS.get(table, ())], bases=(Fields,), gc=False
    )


class _Page(Struct, gc=False):
    data: list[Raw]
    has_more: Any = False


class _Embedded(Struct, gc=False):
    data: list[Raw] | None = None
    has_more: Any = False


class LeanObject:
    """An object of a page read lean: its fields (`obj["id"]`, `obj["created"]` as on a dict), its JSON text
    without its embedded list, and that list's rows, each (fields, JSON text)."""

    __slots__ = ("fields", "text", "kids")

    def __init__(self, fields: Fields, text: bytes, kids: list[tuple[Fields, bytes]]):
        self.fields, self.text, self.kids = fields, text, kids

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]


_page_decoder = msgspec.json.Decoder(_Page)
_object_decoder = msgspec.json.Decoder(dict[str, Raw])
_embedded_decoder = msgspec.json.Decoder(_Embedded | None)
_encoder = msgspec.json.Encoder()


def reader(table: str) -> Callable[[bytes | str], dict]:
    """What reads a page of `table`'s list: the body into `{"data": [...], "has_more": ...}`, each object a
    LeanObject (or a dict, see the module's docstring). Raises msgspec.MsgspecError for a body it does not
    expect."""
    decode_fields = msgspec.json.Decoder(_fields_type(table)).decode
    embedded = EMBEDDED.get(table)
    decode_kid = msgspec.json.Decoder(_fields_type(embedded[1])).decode if embedded else None

    def read_object(raw: Raw) -> LeanObject | dict:
        fields = decode_fields(raw)
        if embedded is None:
            return LeanObject(fields, bytes(raw), [])
        field, _, count = embedded
        top = _object_decoder.decode(raw)
        inner = top.pop(field, None)
        listed = _embedded_decoder.decode(inner) if inner is not None else None
        if listed is not None and listed.has_more:
            return msgspec.json.decode(raw)  # the rows past the tenth are fetched into the dict (_complete)
        kids = (listed.data if listed is not None else None) or []
        if count:
            top[count] = Raw(b"%d" % len(kids))
        return LeanObject(fields, _encoder.encode(top), [(decode_kid(kid), bytes(kid)) for kid in kids])

    def read(body: bytes | str) -> dict:
        if isinstance(body, str):
            body = body.encode()
        if b"\n" in body:
            body = msgspec.json.format(body, indent=-1)  # Stripe's indented JSON, stored compact
        page = _page_decoder.decode(body)
        return {"data": [read_object(raw) for raw in page.data], "has_more": page.has_more}

    return read
