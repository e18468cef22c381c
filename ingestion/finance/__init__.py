"""The finance dlt source: sales and marketing spend and gross margin, from CSV files, into
`raw_finance`. Each load replaces the tables with the files' contents (they are small, and a
corrected file must correct history). No file configured: the tables are left empty and CAC is null.
"""

from __future__ import annotations

from pathlib import Path

import dlt
from dlt.sources import DltResource

from ingestion.finance.helpers import FinanceFileError, gross_margin_rows, pnl_rows, spend_rows

__all__ = ["finance_source", "FinanceFileError"]


@dlt.source(name="finance", max_table_nesting=0)
def finance_source(
    spend_csv: str | None = None, gross_margin_csv: str | None = None, pnl_csv: str | None = None
) -> list[DltResource]:
    """Args:
    spend_csv: path of month,channel,amount,currency rows (sales and marketing spend).
    gross_margin_csv: path of month,gross_margin rows (a fraction, 0.8 = 80%).
    pnl_csv: path of month,revenue,operating_expenses,net_burn,currency rows (the monthly P&L; optional).
    """

    def spend():
        if spend_csv:
            yield from spend_rows(Path(spend_csv))

    def gross_margin():
        if gross_margin_csv:
            yield from gross_margin_rows(Path(gross_margin_csv))

    def pnl():
        if pnl_csv:
            yield from pnl_rows(Path(pnl_csv))

    return [
        dlt.resource(
            spend,
            name="marketing_spend",
            write_disposition="replace",
            primary_key=["month", "channel"],
            columns={
                "month": {"data_type": "date"},
                "channel": {"data_type": "text"},
                "amount": {"data_type": "decimal"},
                "currency": {"data_type": "text"},
            },
        ),
        dlt.resource(
            gross_margin,
            name="gross_margin",
            write_disposition="replace",
            primary_key="month",
            columns={"month": {"data_type": "date"}, "gross_margin": {"data_type": "decimal"}},
        ),
        dlt.resource(
            pnl,
            name="pnl",
            write_disposition="replace",
            primary_key="month",
            columns={
                "month": {"data_type": "date"},
                "revenue": {"data_type": "decimal"},
                "operating_expenses": {"data_type": "decimal"},
                "net_burn": {"data_type": "decimal"},
                "currency": {"data_type": "text"},
            },
        ),
    ]


def ensure_finance_tables(database_url: str, schema: str = "raw_finance") -> None:
    """Empty tables when no file was ever loaded, so the marts build with CAC null."""
    import psycopg2

    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(f'create schema if not exists "{schema}"')
        cur.execute(
            f'create table if not exists "{schema}".marketing_spend (month date, channel varchar, '
            "amount numeric(38, 9), currency varchar, _dlt_load_id varchar not null, _dlt_id varchar not null)"
        )
        cur.execute(
            f'create table if not exists "{schema}".gross_margin (month date, gross_margin numeric(38, 9), '
            "_dlt_load_id varchar not null, _dlt_id varchar not null)"
        )
        cur.execute(
            f'create table if not exists "{schema}".pnl (month date, revenue numeric(38, 9), '
            "operating_expenses numeric(38, 9), net_burn numeric(38, 9), currency varchar, "
            "_dlt_load_id varchar not null, _dlt_id varchar not null)"
        )
