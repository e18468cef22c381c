"""Failures the Stripe-protocol server injects for a test (StripeProtocolServer(faults=...))."""

import re
import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    """Failures to inject, consumed in order; each rule fires `times` times on matching paths."""

    rules: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int | str, path_regex: str = ".*", times: int = 1, should_retry: bool | None = None):
        """status: an HTTP status (429, 500, 503...); "drop" to close the connection without an answer, "reset" to
        reset it (a TCP RST); "truncate" to answer 200 with the first half of the real body."""
        with self.lock:
            self.rules.append(
                {"status": status, "re": re.compile(path_regex), "times": times, "should_retry": should_retry}
            )

    def take(self, path: str) -> dict | None:
        with self.lock:
            for rule in self.rules:
                if rule["times"] > 0 and rule["re"].search(path):
                    rule["times"] -= 1
                    return rule
        return None
