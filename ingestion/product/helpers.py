"""Reading product events: column mapping, timestamp parsing, files, the mapping file."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from ingestion.cleaning import NUL_IN_JSON, CleanedObjects, strip_nul
from ingestion.product import settings


class ProductEventsError(Exception):
    """Bad product-event input or configuration; the message names the file/line or the setting."""


def parse_column_map(spec: str | None) -> dict[str, str]:
    """ "event_id=id,occurred_at=created_at" -> the full raw-column -> source-column map."""
    columns = dict(settings.EVENT_COLUMNS)
    if not spec:
        return columns
    for part in spec.split(","):
        if not part.strip():
            continue
        target, sep, source = part.partition("=")
        target, source = target.strip(), source.strip()
        if not sep or not source:
            raise ProductEventsError(f"SAAS_METRICS_EVENTS_COLUMNS: expected column=source_column, got {part!r}")
        if target not in columns:
            raise ProductEventsError(
                f"SAAS_METRICS_EVENTS_COLUMNS: unknown column {target!r} (one of {', '.join(columns)})"
            )
        columns[target] = source
    return columns


def parse_timestamp(value) -> datetime | None:
    """ISO 8601 text (naive means UTC), epoch seconds, or epoch milliseconds -> aware UTC datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.replace(".", "", 1).isdigit():
            return parse_timestamp(float(text))
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"not a timestamp: {value!r}")


def to_event(
    raw: dict, columns: dict[str, str], where: str, cleaned: CleanedObjects | None = None, may_have_nul: bool = True
) -> dict:
    """One source row -> one raw_product.events row; a clear error for a row that cannot be one.

    NUL characters (PostgreSQL cannot store them) are removed and the event recorded in `cleaned`;
    may_have_nul=False skips that walk (the caller saw the row's JSON text without one)."""
    row = {}
    for target, source in columns.items():
        row[target] = raw.get(source)
    missing = [name for name in settings.REQUIRED if row[name] in (None, "")]
    if missing:
        names = ", ".join(f"{name} (from {columns[name]!r})" for name in missing)
        raise ProductEventsError(f"{where}: missing {names}")
    try:
        row["occurred_at"] = parse_timestamp(row["occurred_at"])
    except (ValueError, TypeError, OverflowError):
        raise ProductEventsError(
            f"{where}: {columns['occurred_at']!r} is not a timestamp: {row['occurred_at']!r}"
        ) from None
    props = row["properties"]
    if isinstance(props, str):
        try:
            props = json.loads(props) if props.strip() else None
        except json.JSONDecodeError:
            raise ProductEventsError(f"{where}: properties is not JSON") from None
    if props is not None and not isinstance(props, dict):
        raise ProductEventsError(f"{where}: properties must be a JSON object, got {type(props).__name__}")
    row["properties"] = props
    for name in ("event_id", "account_id", "user_id", "event_name"):
        if row[name] is not None:
            row[name] = str(row[name])
    if may_have_nul:
        row, changed = strip_nul(row)
        if changed and cleaned is not None:
            cleaned.add("event", row["event_id"])
    return row


def event_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise ProductEventsError(f"SAAS_METRICS_EVENTS_DIR: {folder} is not a folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.lower().endswith(settings.FILE_SUFFIXES))


def file_signature(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def read_event_file(path: Path, columns: dict[str, str], cleaned: CleanedObjects | None = None) -> Iterator[dict]:
    """Rows of one NDJSON (optionally gzipped) or Parquet file, as raw events."""
    if path.name.lower().endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            parquet = pq.ParquetFile(path)
        except Exception as exc:
            raise ProductEventsError(f"{path}: not a readable Parquet file ({exc})") from None
        n = 0
        for batch in parquet.iter_batches(batch_size=settings.BATCH_SIZE):
            for raw in batch.to_pylist():
                n += 1
                yield to_event(raw, columns, f"{path} row {n}", cleaned)
        return
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ProductEventsError(f"{path} line {line_number}: not JSON ({exc.msg})") from None
            if not isinstance(raw, dict):
                raise ProductEventsError(f"{path} line {line_number}: expected a JSON object")
            yield to_event(raw, columns, f"{path} line {line_number}", cleaned, may_have_nul=NUL_IN_JSON in line)


def mapping_rows(path: Path) -> Iterator[dict]:
    """account_id,customer_id rows of the mapping CSV."""
    import csv

    if not path.is_file():
        raise ProductEventsError(f"SAAS_METRICS_ACCOUNT_MAPPING_CSV: {path} is not a file")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [h.strip().lower() for h in next(reader, [])]
        if header != ["account_id", "customer_id"]:
            raise ProductEventsError(f"{path} line 1: header must be account_id,customer_id, got {','.join(header)}")
        seen: dict[str, int] = {}
        for line_number, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 2 or not row[0].strip() or not row[1].strip():
                raise ProductEventsError(f"{path} line {line_number}: expected account_id,customer_id")
            account = row[0].strip()
            if account in seen:
                raise ProductEventsError(f"{path} line {line_number}: account {account} repeats line {seen[account]}")
            seen[account] = line_number
            yield {"account_id": account, "customer_id": row[1].strip()}
