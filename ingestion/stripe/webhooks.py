"""Stripe's webhooks, as the receiver keeps them (README "Intraday freshness"): the `Stripe-Signature` check
(through the official library, against each configured endpoint secret), and the warehouse tables that
record every event once and count every refusal.

An accepted event is not loaded into raw_stripe here: it tells the receiver that something changed, and
the incremental refresh it triggers reads Stripe's own events list as every refresh does (so a webhook
missed, replayed or out of order never changes what the marts say). The event ids kept here make a
replayed delivery a no-op.
"""

from __future__ import annotations

import json
from contextlib import closing

import psycopg2
import stripe

EVENTS_TABLE = "ops.stripe_webhook_events"
REFUSALS_TABLE = "ops.stripe_webhook_refusals"

DDL = f"""
create schema if not exists ops;
create table if not exists {EVENTS_TABLE} (
    event_id text primary key,
    billing_account text not null,
    event_type text not null,
    created_at timestamptz not null,
    received_at timestamptz not null default now(),
    livemode boolean,
    connected_account text,
    payload jsonb not null
);
create table if not exists {REFUSALS_TABLE} (
    received_at timestamptz not null default now(),
    billing_account text,
    reason text not null
);
"""


STALE = "stale signature (timestamp outside the tolerance)"


class Refused(ValueError):
    """A delivery the receiver refuses (HTTP 400): its reason, without the body or the secret."""


def verify(payload: bytes, header: str | None, secrets: tuple[str, ...], tolerance: int) -> dict:
    """The event of a delivery whose Stripe-Signature one of `secrets` signed less than `tolerance` seconds
    ago; Refused otherwise (no secret configured, no or a malformed header, a wrong or a stale signature,
    a body that is not an event)."""
    if not secrets:
        raise Refused("no signing secret configured (STRIPE_WEBHOOK_SECRET)")
    reasons = []
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance)
        except stripe.SignatureVerificationError as exc:
            reasons.append(_reason(str(exc)))
            continue
        break
    else:
        # a secret whose signature matched but is old says more than the others' not matching
        raise Refused(STALE if STALE in reasons else reasons[0])
    try:
        event = json.loads(payload)
    except ValueError:
        raise Refused("the body is not JSON") from None
    if not isinstance(event, dict) or event.get("object") != "event" or not event.get("id") or not event.get("type"):
        raise Refused("the body is not a Stripe event")
    return event


def _reason(message: str) -> str:
    """Stripe's message, shortened to the reason an operator acts on."""
    if "tolerance" in message:
        return STALE
    if "No signatures found matching" in message:
        return "signature does not match (wrong signing secret, or the body was changed)"
    if "No Stripe-Signature header" in message:
        return "no Stripe-Signature header"
    return "malformed Stripe-Signature header"


def ensure_tables(url: str) -> None:
    with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
        cur.execute(DDL)


def record(url: str, billing_account: str, event: dict) -> bool:
    """Keep the event once; True when it is new (a replayed or redelivered event id: False, nothing changes)."""
    with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
        cur.execute(
            f"insert into {EVENTS_TABLE} (event_id, billing_account, event_type, created_at, livemode,"
            " connected_account, payload) values (%s, %s, %s, to_timestamp(%s), %s, %s, %s)"
            " on conflict (event_id) do nothing",
            (
                event["id"],
                billing_account,
                event["type"],
                int(event.get("created") or 0),
                event.get("livemode"),
                event.get("account"),
                json.dumps(event),
            ),
        )
        return cur.rowcount == 1


def count_refusal(url: str, billing_account: str | None, reason: str) -> None:
    with closing(psycopg2.connect(url)) as conn, conn, conn.cursor() as cur:
        cur.execute(
            f"insert into {REFUSALS_TABLE} (billing_account, reason) values (%s, %s)", (billing_account, reason)
        )


def counts(url: str) -> dict[str, int]:
    """Events kept and deliveries refused, all time (the receiver's /health adds this process's own counts)."""
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(f"select (select count(*) from {EVENTS_TABLE}), (select count(*) from {REFUSALS_TABLE})")
        events, refusals = cur.fetchone()
    return {"events_recorded": events, "deliveries_refused": refusals}
