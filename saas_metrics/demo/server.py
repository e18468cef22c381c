"""An HTTP server that speaks Stripe's read API over a `Store`.

It reproduces what a real account does to a careless client - and what the ingestion
has to handle:

- lists page newest first with `limit` (1..100), `starting_after`, `ending_before`, `has_more`;
- `GET /v1/subscriptions` hides canceled (and incomplete_expired) subscriptions unless
  `status=all` (or that status) is asked for;
- `invoice.lines` and `subscription.items` embed at most 10 rows; the rest come from
  `/v1/invoices/{id}/lines` and `/v1/subscription_items?subscription=`;
- `/v1/events` only returns the last 30 days;
- `/v1/invoiceitems` lists pending and invoiced items (`pending=true` only those not invoiced yet), newest
  `date` first, its `created` filter applying to `date` (invoice items have no `created`);
  a deleted item is neither listed nor retrievable (its `invoiceitem.deleted` event remains);
- a price or plan marked unlisted (a deleted legacy plan) is missing from `/v1/prices` and
  `/v1/plans` but still retrievable by id, as subscriptions and invoice lines still name it;
- a wrong API key is a 401 in Stripe's error format;
- objects are those of one API version (stripe_shape.API_VERSION, sent as `Stripe-Version`), checked against
  its OpenAPI spec by tests/test_stripe_spec.py; a coupon's `applies_to` is sent only when expanded;
- a recorded object (tests/recordings/) keeps the `lines` or `items` it was recorded with.

`Faults` injects 429s, 5xx, dropped or reset connections and truncated bodies for tests. The demo and the tests use
the same server, so the demo exercises exactly the code a customer runs.
"""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlparse

from saas_metrics.demo.store import LIST_PATHS, Store
from saas_metrics.demo.stripe_shape import API_VERSION

EMBED_LIMIT = 10
EVENT_WINDOW_SECONDS = 30 * 86400
HIDDEN_SUBSCRIPTION_STATUSES = ["canceled", "incomplete_expired"]
PATH_TO_TYPE = {path: type_ for type_, path in LIST_PATHS.items()}


@dataclass
class Stats:
    requests: int = 0
    by_path: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, path: str) -> None:
        key = re.sub(r"/(cus|sub|in|si|il|ii|price|prod|cn|evt)_[A-Za-z0-9]+", "/{id}", path)
        with self.lock:
            self.requests += 1
            self.by_path[key] = self.by_path.get(key, 0) + 1


def _error(status: int, message: str, type_: str = "invalid_request_error") -> tuple[int, dict]:
    return status, {"error": {"type": type_, "message": message}}


def _parse_params(query: str) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Flat params plus bracketed ones: created[gt]=1 -> nested['created'] = ['gt=1'] style."""
    flat: dict[str, str] = {}
    arrays: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        match = re.fullmatch(r"([a-z_]+)\[([a-z_0-9]*)\]", key)
        if match:
            arrays.setdefault(match.group(1), []).append(f"{match.group(2)}={value}")
        else:
            flat[key] = value
    return flat, arrays


class StripeProtocolServer:
    """Serve a `Store` on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        store: Store,
        api_key: str = "sk_test_saas_metrics",
        port: int = 0,
        now: int | None = None,
        faults=None,
        latency_seconds: float = 0.0,
        stripe_account: str | None = None,
    ):
        self.store = store
        self.api_key = api_key
        # a connected account (acct_...): every request must name it in the Stripe-Account header, as a
        # platform's key reads its connected accounts
        self.stripe_account = stripe_account
        self.now = now
        self.faults = faults  # failures to inject (tests/support/faults.py), or None
        self.stats = Stats()
        self.latency_seconds = latency_seconds
        handler = self._make_handler()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> StripeProtocolServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="stripe-protocol", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> StripeProtocolServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- routing ---------------------------------------------------------------------------
    def handle(self, path: str, query: str, auth: str | None, account: str | None = None) -> tuple[int, dict]:
        if auth != f"Bearer {self.api_key}":
            return _error(401, "Invalid API Key provided", "invalid_request_error")
        if self.stripe_account is not None and account != self.stripe_account:
            return _error(
                403,
                "The provided key does not have access to account "
                f"'{account or '(none)'}' (or that account does not exist).",
                "invalid_request_error",
            )
        flat, arrays = _parse_params(query)
        parts = [p for p in path.split("/") if p]
        if len(parts) < 2 or parts[0] != "v1":
            return _error(404, f"Unrecognized request URL (GET: {path})")
        resource = parts[1]
        if resource not in PATH_TO_TYPE or resource == "line_items":
            return _error(404, f"Unrecognized request URL (GET: {path})")
        type_ = PATH_TO_TYPE[resource]
        expand = [v.partition("=")[2] for v in arrays.get("expand", [])]
        if len(parts) == 2:
            return self._list(type_, path, flat, arrays, expand=[e.removeprefix("data.") for e in expand])
        if len(parts) == 3:
            obj = self.store.get(type_, parts[2])
            if obj is None:
                return _error(404, f"No such {type_}: '{parts[2]}'")
            return 200, self._render(obj, expand)
        if len(parts) == 4 and resource == "invoices" and parts[3] == "lines":
            if self.store.get("invoice", parts[2]) is None:
                return _error(404, f"No such invoice: '{parts[2]}'")
            return self._list("line_item", path, flat, arrays, parent=parts[2])
        return _error(404, f"Unrecognized request URL (GET: {path})")

    def _list(self, type_, path, flat, arrays, parent=None, expand=()) -> tuple[int, dict]:
        try:
            limit = int(flat.get("limit", "10"))
        except ValueError:
            return _error(400, "Invalid integer: limit")
        if not 1 <= limit <= 100:
            return _error(400, "This value must be between 1 and 100 (limit)")
        created = {}
        for item in arrays.get("created", []):
            op, _, value = item.partition("=")
            created[op] = int(value)
        if "created" in flat:
            created = {"gte": int(flat["created"]), "lte": int(flat["created"])}
        statuses = None
        exclude = None
        if type_ == "subscription":
            status = flat.get("status")
            if status == "all":
                pass
            elif status:
                statuses = [status]
            else:
                exclude = HIDDEN_SUBSCRIPTION_STATUSES
        elif type_ in ("invoice",) and flat.get("status"):
            statuses = [flat["status"]]
        elif type_ in ("price", "plan"):
            exclude = ["unlisted"]
        elif type_ == "invoiceitem" and flat.get("pending") in ("true", "false"):
            statuses = ["pending" if flat["pending"] == "true" else "invoiced"]
        if type_ == "subscription_item":
            parent = flat.get("subscription")
            if not parent:
                return _error(400, "Missing required param: subscription.")
        if type_ == "event":
            now = self.now or int(time.time())
            created["gte"] = max(created.get("gte", 0), now - EVENT_WINDOW_SECONDS)
        event_types = [v.partition("=")[2] for v in arrays.get("types", [])] or None
        if type_ == "event" and flat.get("type"):
            event_types = [flat["type"]]
        if type_ in ("line_item", "subscription_item") and parent:
            # children are listed in creation order, as Stripe does for lines and items
            page = self.store.children(type_, parent, limit=limit + 1, after=flat.get("starting_after"))
            has_more = len(page) > limit
            data = page[:limit]
        else:
            try:
                data, has_more = self.store.list(
                    type_,
                    limit=limit,
                    starting_after=flat.get("starting_after"),
                    ending_before=flat.get("ending_before"),
                    created=created or None,
                    customer=flat.get("customer"),
                    parent=flat.get("subscription") if type_ == "invoice" else None,
                    statuses=statuses,
                    exclude_statuses=exclude,
                    event_types=event_types,
                )
            except KeyError as exc:
                return _error(400, f"No such object: '{exc.args[0]}' (starting_after)")
        return 200, {
            "object": "list",
            "url": path,
            "has_more": has_more,
            "data": [self._render(obj, expand) for obj in data],
        }

    def _render(self, obj: dict, expand=()) -> dict:
        """Embed the first 10 lines of an invoice and items of a subscription, as Stripe does;
        expand a customer's default payment method when asked to."""
        kind = obj.get("object")
        if kind == "coupon" and "applies_to" not in expand:
            obj = {k: v for k, v in obj.items() if k != "applies_to"}  # sent only when expanded, as by Stripe
        if kind in ("subscription", "invoice") and "discounts" in expand and obj.get("discounts"):
            discounts = [self.store.get("discount", d) or d if isinstance(d, str) else d for d in obj["discounts"]]
            obj = {**obj, "discounts": discounts}
        if kind == "customer" and "invoice_settings.default_payment_method" in expand:
            settings = obj.get("invoice_settings") or {}
            pm_id = settings.get("default_payment_method")
            if isinstance(pm_id, str):
                pm = self.store.get("payment_method", pm_id)
                obj = {**obj, "invoice_settings": {**settings, "default_payment_method": pm}}
        if isinstance(obj.get("lines" if kind == "invoice" else "items"), dict):
            return obj  # a recorded object (tests/recordings): its embedded list is served as Stripe sent it
        if kind == "invoice":
            obj = {**obj, "lines": self._embedded("line_item", obj["id"], f"/v1/invoices/{obj['id']}/lines")}
        elif kind == "subscription":
            url = f"/v1/subscription_items?subscription={obj['id']}"
            obj = {**obj, "items": self._embedded("subscription_item", obj["id"], url)}
        return obj

    def _embedded(self, kind: str, parent_id: str, url: str) -> dict:
        """The first EMBED_LIMIT children of an object, as Stripe embeds them (the rest are read from `url`)."""
        children = self.store.children(kind, parent_id, limit=EMBED_LIMIT + 1)
        total = self.store.count_children(kind, parent_id) if len(children) > EMBED_LIMIT else len(children)
        return {
            "object": "list",
            "data": children[:EMBED_LIMIT],
            "has_more": total > EMBED_LIMIT,
            "total_count": total,
            "url": url,
        }

    def _make_handler(server_self):  # noqa: N805 - closes over the server instance
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                parsed = urlparse(self.path)
                server_self.stats.hit(parsed.path)
                fault = server_self.faults.take(parsed.path) if server_self.faults is not None else None
                if fault is not None:
                    if fault["status"] in ("drop", "reset"):
                        if fault["status"] == "reset":  # closed with a TCP RST: the client reads ECONNRESET
                            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        self.close_connection = True
                        self.connection.close()
                        return
                    if fault["status"] == "truncate":  # the real answer cut in half, as a 200 of that length
                        status, body = server_self.handle(
                            parsed.path,
                            parsed.query,
                            self.headers.get("Authorization"),
                            self.headers.get("Stripe-Account"),
                        )
                        payload = json.dumps(body, separators=(",", ":")).encode()
                        return self._send(status, payload[: len(payload) // 2])
                    status, body = _error(
                        int(fault["status"]),
                        "injected failure",
                        "rate_limit_error" if fault["status"] == 429 else "api_error",
                    )
                    headers = {}
                    if fault["should_retry"] is not None:
                        headers["Stripe-Should-Retry"] = "true" if fault["should_retry"] else "false"
                    return self._send(status, body, headers)
                if server_self.latency_seconds:
                    time.sleep(server_self.latency_seconds)
                status, body = server_self.handle(
                    parsed.path,
                    parsed.query,
                    self.headers.get("Authorization"),
                    self.headers.get("Stripe-Account"),
                )
                self._send(status, body)

            def _send(self, status: int, body: dict | bytes, headers: dict | None = None):
                # bytes: a body already encoded (a benchmark's precomputed pages)
                payload = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Request-Id", f"req_{server_self.stats.requests}")
                self.send_header("Stripe-Version", API_VERSION)  # the version its objects are in, as Stripe says
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

        return Handler
