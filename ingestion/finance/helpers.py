"""Reading and validating the finance CSV files, with errors that name the file and line."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ingestion.finance import settings

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


class FinanceFileError(Exception):
    """A malformed finance file; the message names the file and the line."""


def read_rows(path: Path, columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    if not path.exists():
        raise FinanceFileError(f"{path}: no such file")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise FinanceFileError(f"{path}: the file is empty (expected a header: {','.join(columns)})")
        header = [h.strip().lower() for h in header]
        if header != columns:
            raise FinanceFileError(f"{path} line 1: header must be {','.join(columns)}, got {','.join(header)}")
        for line_number, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                raise FinanceFileError(f"{path} line {line_number}: expected {len(columns)} fields, got {len(row)}")
            yield line_number, dict(zip(columns, (cell.strip() for cell in row), strict=True))


def _month(path: Path, line: int, value: str) -> str:
    if not MONTH.match(value):
        raise FinanceFileError(f"{path} line {line}: month must be YYYY-MM, got {value!r}")
    return f"{value}-01"


def _number(path: Path, line: int, name: str, value: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise FinanceFileError(f"{path} line {line}: {name} must be a number, got {value!r}") from None
    if not number.is_finite():
        raise FinanceFileError(f"{path} line {line}: {name} must be a number, got {value!r}")
    return number


def spend_rows(path: Path) -> Iterator[dict]:
    seen: dict[tuple[str, str], int] = {}
    for line, row in read_rows(path, settings.SPEND_COLUMNS):
        month = _month(path, line, row["month"])
        if not row["channel"]:
            raise FinanceFileError(f"{path} line {line}: channel is empty")
        amount = _number(path, line, "amount", row["amount"])
        if amount < 0:
            raise FinanceFileError(f"{path} line {line}: amount must not be negative, got {row['amount']!r}")
        if not re.fullmatch(r"[A-Za-z]{3}", row["currency"]):
            raise FinanceFileError(f"{path} line {line}: currency must be a 3-letter code, got {row['currency']!r}")
        key = (month, row["channel"].lower())
        if key in seen:
            raise FinanceFileError(f"{path} line {line}: {row['month']} {row['channel']} repeats line {seen[key]}")
        seen[key] = line
        yield {"month": month, "channel": row["channel"].lower(), "amount": amount, "currency": row["currency"].lower()}


def gross_margin_rows(path: Path) -> Iterator[dict]:
    seen: dict[str, int] = {}
    for line, row in read_rows(path, settings.GROSS_MARGIN_COLUMNS):
        month = _month(path, line, row["month"])
        margin = _number(path, line, "gross_margin", row["gross_margin"])
        if not Decimal(0) <= margin <= Decimal(1):
            raise FinanceFileError(
                f"{path} line {line}: gross_margin is a fraction from 0 to 1, got {row['gross_margin']!r}"
            )
        if month in seen:
            raise FinanceFileError(f"{path} line {line}: {row['month']} repeats line {seen[month]}")
        seen[month] = line
        yield {"month": month, "gross_margin": margin}


def pnl_rows(path: Path) -> Iterator[dict]:
    """The monthly P&L: revenue and operating expenses not negative; net burn may be (cash generated)."""
    seen: dict[str, int] = {}
    for line, row in read_rows(path, settings.PNL_COLUMNS):
        month = _month(path, line, row["month"])
        values = {name: _number(path, line, name, row[name]) for name in ("revenue", "operating_expenses", "net_burn")}
        for name in ("revenue", "operating_expenses"):
            if values[name] < 0:
                raise FinanceFileError(f"{path} line {line}: {name} must not be negative, got {row[name]!r}")
        if not re.fullmatch(r"[A-Za-z]{3}", row["currency"]):
            raise FinanceFileError(f"{path} line {line}: currency must be a 3-letter code, got {row['currency']!r}")
        if month in seen:
            raise FinanceFileError(f"{path} line {line}: {row['month']} repeats line {seen[month]}")
        seen[month] = line
        yield {"month": month, **values, "currency": row["currency"].lower()}
