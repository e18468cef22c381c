"""Product events for the demo customers, written as NDJSON files (one per month) that the
product source loads like any customer's export.

Each customer is a product account (`acct_NNNNNN`, the `tenant_id` in its Stripe metadata) with
users (an admin first). Users are active on some days, more on weekdays, and do a few things
each active day. What makes the data useful: engagement follows the billing history. Accounts
that activate in their first week (invite a colleague and connect an integration) convert from
trial far more often; usage declines over the eight weeks before a voluntary cancellation and
stays low until the subscription ends; nothing happens after it ends. Payment failures
(involuntary churn) give no warning in usage, as in life.

Deterministic: each customer's events come from a generator seeded by (seed, customer number),
independent of the billing simulation's random stream.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

DAY = 86400
HISTORY_MONTHS = 12  # events start this long before "now" (a product that started tracking a year ago)
DECLINE_DAYS = 56  # usage falls over this many days before a cancellation decision

FEATURES = [
    ("dashboard_viewed", 30),
    ("report_created", 18),
    ("export_downloaded", 10),
    ("comment_added", 12),
    ("alert_configured", 5),
    ("api_key_created", 2),
]
FEATURE_NAMES = [name for name, _ in FEATURES]
FEATURE_WEIGHTS = [weight for _, weight in FEATURES]


def _users(rng: random.Random, life: dict) -> int:
    plan = life.get("plan")
    if life.get("free"):
        return rng.randint(1, 2)
    if plan == "Pro":
        return max(1, min(20, life.get("seats", 1) + rng.randint(-1, 1)))
    if plan == "Business":
        return rng.randint(5, 15)
    if plan == "Weekly":
        return 1
    return rng.randint(1, 3)


def _spans(life: dict, now: int) -> list[tuple[int, int]]:
    """(start, end) of each subscription's life; an open one runs to now."""
    spans = []
    for sub in life["subs"]:
        end = sub.ended_at or (sub.cancel_at if sub.cancel_at_period_end else None) or now
        spans.append((sub.start, min(end, now)))
    return spans


def _intensity(t: int, spans: list[tuple[int, int]], decisions: list[int], base: float) -> float:
    """How likely a user is to be active on day t."""
    if not any(start <= t < end for start, end in spans):
        return 0.0
    factor = 1.0
    for decided in decisions:
        if decided - DECLINE_DAYS * DAY <= t < decided:
            factor = min(factor, 0.1 + 0.9 * (decided - t) / (DECLINE_DAYS * DAY))
        elif t >= decided and any(start <= decided < end and t < end for start, end in spans):
            factor = min(factor, 0.08)
    return base * factor


class ProductEventWriter:
    """Appends events to one NDJSON file per month in `folder`."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.handles: dict[str, object] = {}
        self.count = 0

    def write(self, event: dict, when: int) -> None:
        month = time.strftime("%Y-%m", time.gmtime(when))
        handle = self.handles.get(month)
        if handle is None:
            handle = self.handles[month] = (self.folder / f"events-{month}.ndjson").open("w")
        handle.write(json.dumps(event, separators=(",", ":")) + "\n")
        self.count += 1

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()


def customer_events(writer: ProductEventWriter, n: int, signup: int, life: dict, now: int, seed: int) -> None:
    """Every event of customer number n from the start of event history to now."""
    rng = random.Random(f"{seed}:product:{n}")
    history_start = now - HISTORY_MONTHS * 30 * DAY
    account = f"acct_{n:06d}"
    users = _users(rng, life)
    spans = _spans(life, now)
    converting = not life.get("lapsed_trial")
    activates = rng.random() < (0.75 if converting else 0.2)
    base = rng.uniform(0.12, 0.35) * (1.0 if converting else 0.5) * (0.5 if life.get("free") else 1.0)
    seq = 0

    def emit(user: int, name: str, when: int, properties: dict | None = None) -> None:
        nonlocal seq
        if when >= now:
            return
        seq += 1
        props = {"role": "admin" if user == 0 else "member", **(properties or {})}
        writer.write(
            {
                "event_id": f"evt_{n:06d}_{seq:06d}",
                "account_id": account,
                "user_id": f"user_{n:06d}_{user:02d}",
                "event_name": name,
                "properties": props,
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when)),
            },
            when,
        )

    first_day = signup // DAY * DAY
    if activates and signup >= history_start:
        emit(0, "invite_sent", signup + rng.randint(1, 5 * 24) * 3600, {"invited": 1})
        emit(0, "integration_connected", signup + rng.randint(1, 6 * 24) * 3600, {"integration": "slack"})
    day = max(first_day, history_start // DAY * DAY)
    while day < now:
        weekday = time.gmtime(day).tm_wday
        p = _intensity(day + DAY // 2, spans, life["decisions"], base) * (0.3 if weekday >= 5 else 1.0)
        if p > 0:
            for user in range(users):
                if rng.random() >= p:
                    continue
                when = day + rng.randint(7 * 3600, 20 * 3600)
                if when >= now or when < signup:
                    continue
                emit(user, "login", when)
                for _ in range(rng.choice((0, 1, 1, 2, 3))):
                    when += rng.randint(60, 3600)
                    feature = rng.choices(FEATURE_NAMES, weights=FEATURE_WEIGHTS)[0]
                    if when < now:
                        emit(user, feature, when)
                if activates and rng.random() < 0.01 and when < now:
                    emit(user, "invite_sent", when + 60, {"invited": 1})
        day += DAY
