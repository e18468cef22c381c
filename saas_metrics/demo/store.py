"""A disk-backed store of Stripe API objects, in the order Stripe lists them.

The demo generator and the scenario tests write objects here; `server.py` serves them
over Stripe's HTTP protocol. SQLite keeps memory flat at any scale (100k customers and
millions of invoice lines stream to disk) and gives the indexed, newest-first pagination
the real API has.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

# object type -> list path served by the API
LIST_PATHS = {
    "customer": "customers",
    "product": "products",
    "price": "prices",
    "plan": "plans",
    "coupon": "coupons",
    "subscription": "subscriptions",
    "subscription_item": "subscription_items",
    "invoice": "invoices",
    "line_item": "line_items",
    "credit_note": "credit_notes",
    "invoiceitem": "invoiceitems",
    "event": "events",
}

SCHEMA = """
create table if not exists objects (
    seq integer primary key autoincrement,
    type text not null,
    id text not null,
    created integer not null,
    customer text,
    parent text,          -- subscription of an item, invoice of a line, subscription of an invoice
    status text,
    body text not null,
    unique (type, id)
);
create index if not exists objects_list on objects (type, created desc, seq desc);
create index if not exists objects_parent on objects (type, parent, seq);
create index if not exists objects_customer on objects (type, customer, created desc);
create table if not exists meta (key text primary key, value text not null);
"""


def _parent_of(obj: dict) -> str | None:
    kind = obj["object"]
    if kind == "subscription_item":
        return obj.get("subscription")
    if kind == "line_item":
        return obj.get("invoice")
    if kind == "invoice":
        parent = (obj.get("parent") or {}).get("subscription_details") or {}
        return parent.get("subscription") or obj.get("subscription")
    if kind == "credit_note":
        return obj.get("invoice")
    if kind == "invoiceitem":
        parent = (obj.get("parent") or {}).get("subscription_details") or {}
        return parent.get("subscription") or obj.get("subscription")
    return None


def _status_of(obj: dict) -> str | None:
    """The status column: an object's own status; `unlisted` for a price or plan the lists no longer
    return (a deleted legacy plan, still retrievable by id); an invoice item's `pending` or `invoiced`."""
    if obj["object"] in ("price", "plan") and obj.get("_unlisted"):
        return "unlisted"
    if obj["object"] == "invoiceitem":
        return "invoiced" if obj.get("invoice") else "pending"
    return obj.get("status")


class Store:
    """Thread-safe for one writer and many readers (each thread gets its own connection)."""

    def __init__(self, path: Path | str):
        self.path = str(path)
        self._local = threading.local()
        conn = self._conn()
        conn.executescript(SCHEMA)
        conn.commit()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, check_same_thread=False)
            conn.execute("pragma journal_mode=wal")
            conn.execute("pragma synchronous=off")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Fold the write-ahead log into the file (so it can be moved) and close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.execute("pragma wal_checkpoint(truncate)")
            conn.close()
            self._local.conn = None

    # -- writing ---------------------------------------------------------------------------
    def put_many(self, objects: Iterable[dict]) -> int:
        """Insert or replace objects; a replaced object keeps its list position."""
        conn = self._conn()
        rows = [
            (
                obj["object"],
                obj["id"],
                int(obj.get("created") or obj.get("date") or 0),  # an invoice item has `date`, no `created`
                obj.get("customer") if isinstance(obj.get("customer"), str) else None,
                _parent_of(obj),
                _status_of(obj),
                # without the simulator's own keys (`_unlisted`, a price's `_tiers`)
                json.dumps({k: v for k, v in obj.items() if not k.startswith("_")}, separators=(",", ":")),
            )
            for obj in objects
        ]
        conn.executemany(
            "insert into objects (type, id, created, customer, parent, status, body) values (?,?,?,?,?,?,?) "
            "on conflict (type, id) do update set created=excluded.created, customer=excluded.customer, "
            "parent=excluded.parent, status=excluded.status, body=excluded.body",
            rows,
        )
        conn.commit()
        return len(rows)

    def put(self, obj: dict) -> None:
        self.put_many([obj])

    def delete(self, type_: str, id_: str) -> None:
        """Remove an object (a deleted invoice item): no longer listed, retrieving it is a 404."""
        conn = self._conn()
        conn.execute("delete from objects where type = ? and id = ?", (type_, id_))
        conn.commit()

    def set_meta(self, key: str, value: str) -> None:
        conn = self._conn()
        conn.execute("insert or replace into meta values (?, ?)", (key, value))
        conn.commit()

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._conn().execute("select value from meta where key = ?", (key,)).fetchone()
        return row[0] if row else default

    # -- reading ---------------------------------------------------------------------------
    def get(self, type_: str, id_: str) -> dict | None:
        row = self._conn().execute("select body from objects where type = ? and id = ?", (type_, id_)).fetchone()
        return json.loads(row[0]) if row else None

    def count(self, type_: str) -> int:
        return self._conn().execute("select count(*) from objects where type = ?", (type_,)).fetchone()[0]

    def children(self, type_: str, parent: str, limit: int | None = None, after: str | None = None) -> list[dict]:
        """Items of a subscription or lines of an invoice, in creation order."""
        sql = "select body from objects where type = ? and parent = ?"
        args: list = [type_, parent]
        if after:
            sql += " and seq > (select seq from objects where type = ? and id = ?)"
            args += [type_, after]
        sql += " order by seq"
        if limit is not None:
            sql += " limit ?"
            args.append(limit)
        return [json.loads(r[0]) for r in self._conn().execute(sql, args)]

    def count_children(self, type_: str, parent: str) -> int:
        return (
            self._conn()
            .execute("select count(*) from objects where type = ? and parent = ?", (type_, parent))
            .fetchone()[0]
        )

    def list(
        self,
        type_: str,
        *,
        limit: int,
        starting_after: str | None = None,
        ending_before: str | None = None,
        created: dict[str, int] | None = None,
        customer: str | None = None,
        parent: str | None = None,
        statuses: list[str] | None = None,
        exclude_statuses: list[str] | None = None,
        event_types: list[str] | None = None,
    ) -> tuple[list[dict], bool]:
        """One page, newest first (created desc, then latest written first), like Stripe."""
        where = ["type = ?"]
        args: list = [type_]
        for op, sql_op in (("gt", ">"), ("gte", ">="), ("lt", "<"), ("lte", "<=")):
            if created and op in created:
                where.append(f"created {sql_op} ?")
                args.append(created[op])
        if customer:
            where.append("customer = ?")
            args.append(customer)
        if parent:
            where.append("parent = ?")
            args.append(parent)
        if statuses:
            where.append(f"status in ({','.join('?' * len(statuses))})")
            args += statuses
        if exclude_statuses:
            where.append(f"coalesce(status, '') not in ({','.join('?' * len(exclude_statuses))})")
            args += exclude_statuses
        if event_types:
            where.append(f"json_extract(body, '$.type') in ({','.join('?' * len(event_types))})")
            args += event_types
        order = "created desc, seq desc"
        if starting_after or ending_before:
            cursor_id = starting_after or ending_before
            row = (
                self._conn()
                .execute("select created, seq from objects where type = ? and id = ?", (type_, cursor_id))
                .fetchone()
            )
            if row is None:
                raise KeyError(cursor_id)
            if starting_after:
                where.append("(created < ? or (created = ? and seq < ?))")
            else:
                where.append("(created > ? or (created = ? and seq > ?))")
                order = "created asc, seq asc"
            args += [row[0], row[0], row[1]]
        sql = f"select body from objects where {' and '.join(where)} order by {order} limit ?"
        rows = self._conn().execute(sql, [*args, limit + 1]).fetchall()
        has_more = len(rows) > limit
        page = [json.loads(r[0]) for r in rows[:limit]]
        if ending_before:
            page.reverse()
        return page, has_more

    def iter_type(self, type_: str) -> Iterator[dict]:
        for (body,) in self._conn().execute("select body from objects where type = ? order by seq", (type_,)):
            yield json.loads(body)
