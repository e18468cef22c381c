"""Stripe's calendar arithmetic: where a billing period ends. Periods step from the billing-cycle anchor by
the price's interval, and a month step keeps the anchor's day clamped to the month's length (Jan 31 -> Feb 28 ->
Mar 31), so every boundary is computed from the anchor, never from the previous boundary. Subscriptions,
repeating coupons and the demo's generator all count time this way."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime


def add_interval(anchor: int, n: int, interval: str, count: int = 1) -> int:
    """The n-th period boundary after `anchor` (Stripe's calendar arithmetic)."""
    start = datetime.fromtimestamp(anchor, UTC)
    if interval in ("month", "year"):
        months = n * count * (12 if interval == "year" else 1)
        total = start.month - 1 + months
        year, month = start.year + total // 12, total % 12 + 1
        day = min(start.day, calendar.monthrange(year, month)[1])
        return int(start.replace(year=year, month=month, day=day).timestamp())
    days = {"week": 7, "day": 1}[interval] * n * count
    return anchor + days * 86400
