"""Progress of a resource during a long load, logged every few seconds and at its end."""

from __future__ import annotations

import logging
import time

from ingestion.stripe.helpers import StripeApi

logger = logging.getLogger("saas_metrics.ingestion.stripe")


class Progress:
    """Progress of one resource during a long load: objects, pages (requests) and rate, every
    `every_seconds` and at the end (README "Operating it in Dagster": what a long first load shows)."""

    def __init__(self, name: str, api: StripeApi | None = None, every_seconds: float = 10.0):
        self.name, self.api, self.every = name, api, every_seconds
        self.count, self.start = 0, time.monotonic()
        self.next_report = self.start + every_seconds

    def tick(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now >= self.next_report:
            self.next_report = now + self.every
            rate = self.count / max(now - self.start, 1e-6)
            logger.info("stripe %s: %d objects, %s so far (%.0f objects/s)", self.name, self.count, self._pages(), rate)

    def _pages(self) -> str:
        pages = self.api.pages_of(self.name) if self.api is not None else None
        return f"{pages} pages" if pages is not None else "? pages"

    def done(self) -> None:
        seconds = time.monotonic() - self.start
        pages = self.api.pages_of(self.name) if self.api is not None else None
        # the numbers again, for a caller that collects them (bench/stripe_ingest.py)
        done = {"resource": self.name, "objects": self.count, "requests": pages, "seconds": round(seconds, 2)}
        extra = {"stripe_resource_done": done}
        logger.info("stripe %s: %d objects, %s in %.1fs", self.name, self.count, self._pages(), seconds, extra=extra)
