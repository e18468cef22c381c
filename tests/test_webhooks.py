"""`saas-metrics webhooks` (orchestration/webhooks.py, ingestion/stripe/webhooks.py): deliveries signed as
Stripe signs them (the official library's own header), over HTTP, into a real PostgreSQL. The refresh a
burst asks for is counted here instead of run: a real refresh is `saas-metrics run --wait`, tested as such."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
import stripe

from orchestration import cli
from orchestration.webhooks import Debouncer, serve
from saas_metrics import runtime
from saas_metrics.config import ConfigError, load_settings
from tests.conftest import query

SECRET = "whsec_test_endpoint_secret_one"
ROLLED = "whsec_test_endpoint_secret_two"


def event(event_id: str, type_: str = "customer.subscription.updated") -> bytes:
    """An event as Stripe delivers it (API 2025-03-31 and later: the object under data, the request)."""
    body = {
        "id": event_id,
        "object": "event",
        "api_version": "2026-03-25.dahlia",
        "created": int(time.time()) - 5,
        "data": {"object": {"id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active"}},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": "req_1", "idempotency_key": None},
        "type": type_,
    }
    return json.dumps(body, indent=2).encode()  # Stripe sends it pretty-printed: the signature covers every byte


def signed(body: bytes, secret: str = SECRET, at: int | None = None) -> str:
    return stripe.WebhookSignature.generate_signature_header(body.decode(), secret, at)


def post(base: str, body: bytes, signature: str | None, path: str = "/stripe/webhooks") -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"} | ({"Stripe-Signature": signature} if signature else {})
    request = urllib.request.Request(base + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def health(base: str) -> dict:
    with urllib.request.urlopen(base + "/health", timeout=10) as response:
        return json.loads(response.read())


def poll(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def receiver(fresh_database, monkeypatch):
    """A receiver on a free port with two secrets (an endpoint's old and new while Stripe rolls it) and a
    0.3 s debounce; yields (base URL, warehouse URL, the refreshes run)."""
    url = fresh_database("webhooks")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", f"{SECRET}, {ROLLED}")
    monkeypatch.setenv("SAAS_METRICS_WEBHOOK_DEBOUNCE_SECONDS", "0.3")
    monkeypatch.setenv("SAAS_METRICS_WEBHOOK_MAX_DELAY_SECONDS", "5")
    monkeypatch.setenv("STRIPE_API_KEY", "rk_test_webhooks")
    runtime.settings.cache_clear()
    refreshes: list[float] = []
    server = serve(url, runtime.settings(), "127.0.0.1", 0, refresh=lambda: refreshes.append(time.monotonic()))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", url, refreshes, server
    finally:
        server.shutdown()
        server.server_close()
        server.debouncer.stop()


def test_a_signed_event_is_recorded_once_and_a_burst_asks_for_one_refresh(receiver):
    base, url, refreshes, server = receiver
    first = event("evt_1")
    assert post(base, first, signed(first)) == (200, {"received": True})
    # Stripe delivers again when an answer was lost: the same event, a new signature; nothing changes
    assert post(base, first, signed(first)) == (200, {"received": True, "duplicate": True})
    second = event("evt_2", "invoice.paid")
    assert post(base, second, signed(second, ROLLED)) == (200, {"received": True})  # the rolled secret
    poll(lambda: len(refreshes) == 1 and not server.debouncer.pending)
    rows = query(url, "select event_id, billing_account, event_type from ops.stripe_webhook_events order by 1")
    assert rows == [("evt_1", "default", "customer.subscription.updated"), ("evt_2", "default", "invoice.paid")]
    assert query(url, "select payload->'data'->'object'->>'customer' from ops.stripe_webhook_events limit 1") == [
        ("cus_1",)
    ]
    # a replay after the refresh asks for none
    assert post(base, second, signed(second)) == (200, {"received": True, "duplicate": True})
    assert not server.debouncer.pending
    # a new event does
    third = event("evt_3", "customer.updated")
    assert post(base, third, signed(third))[0] == 200
    poll(lambda: len(refreshes) == 2)
    assert health(base) | {"refresh_pending": False} == {
        "accepted": 3,
        "duplicates": 2,
        "refused": 0,
        "events_recorded": 3,
        "deliveries_refused": 0,
        "refreshes": 2,
        "refresh_failures": 0,
        "refresh_pending": False,
    }


def test_a_wrong_stale_or_missing_signature_is_refused_and_counted(receiver):
    base, url, refreshes, server = receiver
    body = event("evt_refused")
    assert post(base, body, signed(body, "whsec_someone_else")) == (
        400,
        {"error": "signature does not match (wrong signing secret, or the body was changed)"},
    )
    assert post(base, body, signed(body, at=int(time.time()) - 301)) == (
        400,
        {"error": "stale signature (timestamp outside the tolerance)"},
    )
    assert post(base, body, None) == (400, {"error": "no Stripe-Signature header"})
    assert post(base, body, "t=abc")[0] == 400
    tampered = body.replace(b"customer.subscription.updated", b"customer.subscription.deleted")
    assert post(base, tampered, signed(body))[0] == 400  # signed, then changed on the way
    not_an_event = b'{"object": "customer", "id": "cus_1"}'
    assert post(base, not_an_event, signed(not_an_event)) == (400, {"error": "the body is not a Stripe event"})
    assert post(base, body, signed(body), path="/stripe/webhooks/nobody")[0] == 404
    assert query(url, "select count(*) from ops.stripe_webhook_events") == [(0,)]
    assert query(url, "select reason, count(*) from ops.stripe_webhook_refusals group by 1 order by 1") == [
        ("malformed Stripe-Signature header", 1),
        ("no Stripe-Signature header", 1),
        ("signature does not match (wrong signing secret, or the body was changed)", 2),
        ("stale signature (timestamp outside the tolerance)", 1),
        ("the body is not a Stripe event", 1),
    ]
    assert health(base)["refused"] == 6 and health(base)["deliveries_refused"] == 6
    assert refreshes == [] and not server.debouncer.pending


def test_a_steady_stream_of_events_still_refreshes_within_the_max_delay():
    # events every 50 ms for 2.5 s never leave the 0.3 s of quiet the debounce waits for; the 0.5 s cap does
    runs: list[float] = []
    debouncer = Debouncer(lambda: runs.append(time.monotonic()), delay=0.3, max_delay=0.5)
    try:
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            debouncer.poke()
            time.sleep(0.05)
        assert len(runs) >= 2  # about five on an idle machine: one per 0.5 s, each from the first poke waiting
        assert runs[0] - started >= 0.5
        poll(lambda: not debouncer.pending)
    finally:
        debouncer.stop()


def test_a_failed_refresh_is_counted_and_the_next_burst_tries_again():
    calls: list[int] = []

    def refresh():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("saas-metrics run exited with 1")

    debouncer = Debouncer(refresh, delay=0.05, max_delay=1)
    try:
        debouncer.poke()
        poll(lambda: debouncer.failures == 1)
        debouncer.poke()
        poll(lambda: debouncer.runs == 1)
        assert len(calls) == 2
    finally:
        debouncer.stop()


def test_the_webhook_settings_are_checked(monkeypatch):
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "sk_test_not_a_signing_secret")
    with pytest.raises(ConfigError, match="start with whsec_"):
        load_settings()
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("SAAS_METRICS_WEBHOOK_DEBOUNCE_SECONDS", "120")
    monkeypatch.setenv("SAAS_METRICS_WEBHOOK_MAX_DELAY_SECONDS", "60")
    with pytest.raises(ConfigError, match=r"MAX_DELAY_SECONDS \(60\) must be at least"):
        load_settings()
    monkeypatch.delenv("SAAS_METRICS_WEBHOOK_DEBOUNCE_SECONDS")
    monkeypatch.delenv("SAAS_METRICS_WEBHOOK_MAX_DELAY_SECONDS")
    hooks = load_settings().webhooks
    assert (hooks.secrets, hooks.debounce_seconds, hooks.max_delay_seconds) == ((SECRET,), 60.0, 300.0)
    assert SECRET not in repr(load_settings())  # a secret is never printed with the settings


def test_the_command_without_a_secret_is_one_line(capsys):
    assert cli.main(["webhooks"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("saas-metrics: error: STRIPE_WEBHOOK_SECRET is not set")
