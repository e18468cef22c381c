"""Reading and validating the finance CSV files, with errors that name the file and line."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import date
from decimal import Decimal, InvalidOperation
from pathlib import Path

from ingestion.finance import settings

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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


def _not_negative(path: Path, line: int, name: str, value: str) -> Decimal:
    number = _number(path, line, name, value)
    if number < 0:
        raise FinanceFileError(f"{path} line {line}: {name} must not be negative, got {value!r}")
    return number


def _currency(path: Path, line: int, value: str) -> None:
    if not re.fullmatch(r"[A-Za-z]{3}", value):
        raise FinanceFileError(f"{path} line {line}: currency must be a 3-letter code, got {value!r}")


def spend_rows(path: Path) -> Iterator[dict]:
    seen: dict[tuple[str, str], int] = {}
    for line, row in read_rows(path, settings.SPEND_COLUMNS):
        month = _month(path, line, row["month"])
        if not row["channel"]:
            raise FinanceFileError(f"{path} line {line}: channel is empty")
        amount = _not_negative(path, line, "amount", row["amount"])
        _currency(path, line, row["currency"])
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
        values = {name: _not_negative(path, line, name, row[name]) for name in ("revenue", "operating_expenses")}
        values["net_burn"] = _number(path, line, "net_burn", row["net_burn"])
        _currency(path, line, row["currency"])
        if month in seen:
            raise FinanceFileError(f"{path} line {line}: {row['month']} repeats line {seen[month]}")
        seen[month] = line
        yield {"month": month, **values, "currency": row["currency"].lower()}


def _date(path: Path, line: int, name: str, value: str) -> date:
    try:
        if not DATE.match(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise FinanceFileError(f"{path} line {line}: {name} must be a date YYYY-MM-DD, got {value!r}") from None


def _count(path: Path, line: int, name: str, value: str) -> int:
    if not value:
        return 1
    if not re.fullmatch(r"\d+", value) or int(value) < 1:
        raise FinanceFileError(f"{path} line {line}: {name} must be a whole number of at least 1, got {value!r}")
    return int(value)


def contract_rows(path: Path) -> Iterator[dict]:
    """The contracts billed outside Stripe, one row per version: a version is in force from its start_date
    until its end_date or the contract's next version, whichever comes first; only the last may be open-ended
    (no end_date). A contract keeps one customer and one currency; a customer keeps one name and country."""
    versions: dict[str, list[tuple[int, dict]]] = {}
    customers: dict[str, tuple[int, str, str]] = {}
    for line, row in read_rows(path, settings.CONTRACT_COLUMNS):
        for name in ("contract_id", "customer_id", "plan"):
            if not row[name]:
                raise FinanceFileError(f"{path} line {line}: {name} is empty")
        amount = _not_negative(path, line, "amount", row["amount"])
        _currency(path, line, row["currency"])
        interval = row["interval"].lower()
        if interval not in settings.CONTRACT_INTERVALS:
            raise FinanceFileError(
                f"{path} line {line}: interval must be one of {', '.join(settings.CONTRACT_INTERVALS)}, "
                f"got {row['interval']!r}"
            )
        discount = _number(path, line, "discount_percent", row["discount_percent"] or "0")
        if not Decimal(0) <= discount <= Decimal(100):
            raise FinanceFileError(
                f"{path} line {line}: discount_percent is a percentage from 0 to 100, got {row['discount_percent']!r}"
            )
        country = row["country"].upper()
        if country and not re.fullmatch(r"[A-Z]{2}", country):
            raise FinanceFileError(
                f"{path} line {line}: country must be a 2-letter code or empty, got {row['country']!r}"
            )
        start = _date(path, line, "start_date", row["start_date"])
        end = _date(path, line, "end_date", row["end_date"]) if row["end_date"] else None
        if end is not None and end <= start:
            raise FinanceFileError(f"{path} line {line}: end_date {end} is not after start_date {start}")
        customer = (row["customer_name"], country)
        if row["customer_id"] in customers and customers[row["customer_id"]][1:] != customer:
            first = customers[row["customer_id"]][0]
            raise FinanceFileError(
                f"{path} line {line}: customer {row['customer_id']} has another name or country on line {first}"
            )
        customers.setdefault(row["customer_id"], (line, *customer))
        versions.setdefault(row["contract_id"], []).append(
            (
                line,
                {
                    "contract_id": row["contract_id"],
                    "customer_id": row["customer_id"],
                    "customer_name": row["customer_name"] or None,
                    "country": country or None,
                    "plan": row["plan"],
                    "amount": amount,
                    "currency": row["currency"].lower(),
                    "billing_interval": interval,
                    "interval_count": _count(path, line, "interval_count", row["interval_count"]),
                    "quantity": _count(path, line, "quantity", row["quantity"]),
                    "discount_percent": discount,
                    "start_date": start,
                    "end_date": end,
                    "file_line": line,
                },
            )
        )
    for contract_id, rows in versions.items():
        rows.sort(key=lambda pair: pair[1]["start_date"])
        for (line_a, a), (line_b, b) in zip(rows, rows[1:], strict=False):
            where = f"{path} line {line_b}: contract {contract_id}"
            if b["start_date"] == a["start_date"]:
                raise FinanceFileError(f"{where} has two versions starting {b['start_date']} (line {line_a})")
            if a["end_date"] is not None and a["end_date"] > b["start_date"]:
                raise FinanceFileError(
                    f"{where} starts {b['start_date']}, before the version of line {line_a} ends ({a['end_date']})"
                )
            for name in ("customer_id", "currency"):
                if b[name] != a[name]:
                    raise FinanceFileError(f"{where} changes its {name} (line {line_a}: {a[name]}, here: {b[name]})")
        for _, row in rows:
            yield row


def customer_mapping_rows(path: Path) -> Iterator[dict]:
    """Customers of several sources that are one company: each (billing_account, customer_id) once, with the
    customer_key they share (the id the marts then know them by). billing_account is a Stripe account's name
    (`default` with STRIPE_API_KEY alone) or `contracts`; customer_id is Stripe's `cus_...` or the contracts
    file's customer_id as written there."""
    seen: dict[tuple[str, str], int] = {}
    for line, row in read_rows(path, settings.CUSTOMER_MAPPING_COLUMNS):
        for name in settings.CUSTOMER_MAPPING_COLUMNS:
            if not row[name]:
                raise FinanceFileError(f"{path} line {line}: {name} is empty")
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", row["billing_account"]):
            raise FinanceFileError(
                f"{path} line {line}: billing_account must be a Stripe account's name or contracts, "
                f"got {row['billing_account']!r}"
            )
        key = (row["billing_account"], row["customer_id"])
        if key in seen:
            raise FinanceFileError(
                f"{path} line {line}: {row['billing_account']} {row['customer_id']} repeats line {seen[key]}"
            )
        seen[key] = line
        yield {**row, "file_line": line}
