"""Time helpers of the tests."""

from datetime import UTC, datetime


def ts(text: str) -> int:
    """'2024-01-31 23:30' (UTC) -> unix seconds."""
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M" if ":" in text else "%Y-%m-%d"
    return int(datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp())
