"""`saas-metrics webhooks`: a receiver for Stripe's webhooks that keeps the marts fresh through the day
(README "Intraday freshness").

POST /stripe/webhooks (the account named LEGACY_STRIPE_ACCOUNT, or the only one configured) or
/stripe/webhooks/<account name> (SAAS_METRICS_STRIPE_ACCOUNTS): the delivery's Stripe-Signature is checked
(ingestion/stripe/webhooks.py), a new event is recorded and asks for a refresh; a refused one answers 400
and is counted; a replayed one answers 200 and changes nothing. GET /health: what it received.

Refreshes are debounced: one starts `debounce_seconds` after the last new event, or `max_delay_seconds`
after the first one waiting, whichever is sooner; events arriving during a refresh ask for the next one.
A refresh is `saas-metrics run --wait` in a subprocess (the same incremental refresh as the CLI's, waiting
for a nightly or any other refresh holding the lock), its output appended to logs/webhook-refreshes.log.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ingestion.stripe import webhooks
from saas_metrics.config import LEGACY_STRIPE_ACCOUNT, Settings, child_environment

log = logging.getLogger("saas_metrics.webhooks")

PATH = "/stripe/webhooks"
MAX_BODY = 1024 * 1024  # Stripe's events are a few kB; anything near this is not one


class Debouncer:
    """Runs `action` once per burst of `poke()`s: `delay` seconds after the last poke, at most `max_delay`
    after the first; pokes during a run start the next burst. `action` runs on this object's own thread."""

    def __init__(self, action: Callable[[], None], delay: float, max_delay: float, clock=time.monotonic):
        self.action, self.delay, self.max_delay, self.clock = action, delay, max_delay, clock
        self.runs = 0
        self.failures = 0
        self._first: float | None = None
        self._last: float | None = None
        self._wake = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="webhook-refresh", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        with self._wake:
            now = self.clock()
            self._first = now if self._first is None else self._first
            self._last = now
            self._wake.notify()

    @property
    def pending(self) -> bool:
        with self._wake:
            return self._first is not None

    def _due(self) -> float | None:
        if self._first is None:
            return None
        return min(self._last + self.delay, self._first + self.max_delay)

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (self._due() is None or self._due() > self.clock()):
                    due = self._due()
                    self._wake.wait(None if due is None else max(0.01, due - self.clock()))
                if self._stopped:
                    return
                self._first = self._last = None
            try:
                self.action()
                self.runs += 1
            except Exception:  # the next burst tries again; the receiver keeps receiving
                self.failures += 1
                log.exception("the refresh a webhook asked for failed")

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=5)


def cli_refresh(settings: Settings) -> Callable[[], None]:
    """A refresh as `saas-metrics run --wait` would run it, its output appended to logs/webhook-refreshes.log."""
    log_file = settings.home / "logs" / "webhook-refreshes.log"

    def refresh() -> None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a") as out:
            out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} refresh asked by webhooks\n")
            out.flush()
            result = subprocess.run(
                [sys.executable, "-m", "orchestration.cli", "run", "--wait"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_environment(),
                cwd=Path(__file__).resolve().parent.parent,
                check=False,
            )
        if result.returncode != 0:
            raise RuntimeError(f"saas-metrics run exited with {result.returncode} (see {log_file})")
        log.info("refresh asked by webhooks finished")

    return refresh


class Receiver(ThreadingHTTPServer):
    """The HTTP server, with what its handler needs: the warehouse, the secrets, the accounts, the debouncer."""

    daemon_threads = True

    def __init__(self, address, url: str, settings: Settings, debouncer: Debouncer):
        self.url = url
        self.secrets = settings.webhooks.secrets
        self.tolerance = settings.webhooks.tolerance_seconds
        names = [account.name for account in settings.stripe_accounts]
        self.accounts = set(names) | {LEGACY_STRIPE_ACCOUNT}
        self.default_account = names[0] if len(names) == 1 else LEGACY_STRIPE_ACCOUNT
        self.debouncer = debouncer
        self.received = {"accepted": 0, "duplicates": 0, "refused": 0}
        self.lock = threading.Lock()
        webhooks.ensure_tables(url)
        super().__init__(address, Handler)

    def count(self, what: str) -> None:
        with self.lock:
            self.received[what] += 1


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def log_message(self, format, *args):  # noqa: A002 - http.server's name
        log.debug(format, *args)  # never the body: the access line is all it would say

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _account(self) -> str | None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == PATH:
            return self.server.default_account
        if path.startswith(PATH + "/"):
            name = path[len(PATH) + 1 :]
            return name if name in self.server.accounts else None
        return None

    def do_GET(self):  # noqa: N802 - http.server's name
        if self.path.split("?", 1)[0].rstrip("/") != "/health":
            self._answer(404, {"error": "not found"})
            return
        with self.server.lock:
            received = dict(self.server.received)
        debouncer = self.server.debouncer
        body = {
            **received,
            **webhooks.counts(self.server.url),
            "refreshes": debouncer.runs,
            "refresh_failures": debouncer.failures,
            "refresh_pending": debouncer.pending,
        }
        self._answer(200, body)

    def do_POST(self):  # noqa: N802 - http.server's name
        account = self._account()
        if account is None:
            self._answer(404, {"error": f"no such endpoint: POST {PATH} or {PATH}/<account name>"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._refuse(account, "body too large", status=413)
            return
        payload = self.rfile.read(length)
        try:
            event = webhooks.verify(
                payload, self.headers.get("Stripe-Signature"), self.server.secrets, self.server.tolerance
            )
        except webhooks.Refused as exc:
            self._refuse(account, str(exc))
            return
        if webhooks.record(self.server.url, account, event):
            self.server.count("accepted")
            self.server.debouncer.poke()
            self._answer(200, {"received": True})
        else:
            self.server.count("duplicates")
            self._answer(200, {"received": True, "duplicate": True})

    def _refuse(self, account: str, reason: str, status: int = 400) -> None:
        self.server.count("refused")
        webhooks.count_refusal(self.server.url, account, reason)
        log.warning(f"refused a webhook delivery for {account}: {reason}")
        self._answer(status, {"error": reason})


def serve(
    url: str,
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8787,
    refresh: Callable[[], None] | None = None,
) -> Receiver:
    """The receiver, bound and ready (call serve_forever(); shutdown() and debouncer.stop() to end it)."""
    hooks = settings.webhooks
    debouncer = Debouncer(refresh or cli_refresh(settings), hooks.debounce_seconds, hooks.max_delay_seconds)
    return Receiver((host, port), url, settings, debouncer)
