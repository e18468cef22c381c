"""The finance CSV files: formats, and errors that name the file and line."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ingestion.finance.helpers import FinanceFileError, gross_margin_rows, spend_rows


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_sample_files_are_valid():
    from pathlib import Path

    sample = Path(__file__).parent.parent / "ingestion" / "finance" / "sample"
    spend = list(spend_rows(sample / "marketing_spend.csv"))
    assert len(spend) == 6 and spend[0] == {
        "month": "2025-01-01",
        "channel": "paid_search",
        "amount": Decimal("12000.00"),
        "currency": "usd",
    }
    assert [r["gross_margin"] for r in gross_margin_rows(sample / "gross_margin.csv")] == [
        Decimal("0.78"),
        Decimal("0.80"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "month,channel,amount,currency\n2025-01,ads,12,usd\n2025-02,ads,abc,usd\n",
            "line 3: amount must be a number, got 'abc'",
        ),
        ("month,channel,amount,currency\n2025-13,ads,12,usd\n", "line 2: month must be YYYY-MM, got '2025-13'"),
        ("month,channel,amount,currency\n2025-01,ads,12\n", "line 2: expected 4 fields, got 3"),
        ("month,channel,amount\n", "line 1: header must be month,channel,amount,currency"),
        ("month,channel,amount,currency\n2025-01,ads,-5,usd\n", "line 2: amount must not be negative"),
        ("month,channel,amount,currency\n2025-01,ads,5,dollars\n", "line 2: currency must be a 3-letter code"),
        (
            "month,channel,amount,currency\n2025-01,ads,5,usd\n\n2025-01,Ads,6,usd\n",
            "line 4: 2025-01 Ads repeats line 2",
        ),
        ("", "the file is empty"),
    ],
)
def test_malformed_spend_names_the_line(tmp_path, text, message):
    path = write(tmp_path, "spend.csv", text)
    with pytest.raises(FinanceFileError, match=message.replace("(", r"\(")) as error:
        list(spend_rows(path))
    assert str(error.value).startswith(str(path))


def test_gross_margin_is_a_fraction(tmp_path):
    path = write(tmp_path, "margin.csv", "month,gross_margin\n2025-01,78\n")
    with pytest.raises(FinanceFileError, match="line 2: gross_margin is a fraction from 0 to 1, got '78'"):
        list(gross_margin_rows(path))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FinanceFileError, match="no such file"):
        list(spend_rows(tmp_path / "nope.csv"))


def test_pnl_rows_are_validated_with_file_and_line(tmp_path):
    from pathlib import Path

    from ingestion.finance.helpers import pnl_rows

    sample = Path(__file__).parent.parent / "ingestion" / "finance" / "sample" / "pnl.csv"
    assert [r["net_burn"] for r in pnl_rows(sample)] == [Decimal("27500.00"), Decimal("25000.00")]

    good = write(tmp_path, "pnl.csv", "month,revenue,operating_expenses,net_burn,currency\n2025-01,1000,1500,-20,USD\n")
    assert list(pnl_rows(good)) == [
        {
            "month": "2025-01-01",
            "revenue": Decimal("1000"),
            "operating_expenses": Decimal("1500"),
            "net_burn": Decimal("-20"),
            "currency": "usd",
        }
    ]
    cases = [
        (
            "month,revenue,operating_expenses,net_burn,currency\n2025-01,1,2,3,usd\n2025-02,x,2,3,usd\n",
            "line 3: revenue must be a number, got 'x'",
        ),
        (
            "month,revenue,operating_expenses,net_burn,currency\n2025-01,1,-2,3,usd\n",
            "line 2: operating_expenses must not be negative",
        ),
        (
            "month,revenue,operating_expenses,net_burn,currency\n2025-01,1,2,3,usd\n2025-01,1,2,3,usd\n",
            "line 3: 2025-01 repeats line 2",
        ),
        (
            "month,revenue,opex,net_burn,currency\n",
            "line 1: header must be month,revenue,operating_expenses,net_burn,currency",
        ),
        ("month,revenue,operating_expenses,net_burn,currency\n2025-1,1,2,3,usd\n", "line 2: month must be YYYY-MM"),
    ]
    for text, message in cases:
        path = write(tmp_path, "bad.csv", text)
        with pytest.raises(FinanceFileError, match=message) as error:
            list(pnl_rows(path))
        assert str(error.value).startswith(str(path))
