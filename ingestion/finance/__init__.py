"""The finance dlt source: sales and marketing spend, gross margin, the P&L and the contracts billed
outside Stripe, from CSV files, into `raw_finance`. Each load replaces the tables with the files' contents
(they are small, and a corrected file must correct history). No file configured: the tables are left empty
(no spend: CAC is null; no contracts: Stripe's subscriptions alone).
"""

from __future__ import annotations

from pathlib import Path

import dlt
from dlt.sources import DltResource

from ingestion.finance import settings
from ingestion.finance.helpers import (
    FinanceFileError,
    contract_rows,
    customer_mapping_rows,
    gross_margin_rows,
    pnl_rows,
    spend_rows,
)
from ingestion.raw_tables import RawTables

__all__ = ["finance_source", "FinanceFileError", "TABLES"]

# The tables' columns and primary keys, as the resources declare them and as they are created empty when no
# file was ever loaded (ingestion.raw_tables.ensure_tables: the marts build, with CAC null).
TABLES = RawTables(
    schema=settings.RAW_SCHEMA,
    columns={
        "marketing_spend": {
            "month": {"data_type": "date", "nullable": False, "primary_key": True},
            "channel": {"data_type": "text", "nullable": False, "primary_key": True},
            "amount": {"data_type": "decimal"},
            "currency": {"data_type": "text"},
        },
        "gross_margin": {
            "month": {"data_type": "date", "nullable": False, "primary_key": True},
            "gross_margin": {"data_type": "decimal"},
        },
        "pnl": {
            "month": {"data_type": "date", "nullable": False, "primary_key": True},
            "revenue": {"data_type": "decimal"},
            "operating_expenses": {"data_type": "decimal"},
            "net_burn": {"data_type": "decimal"},
            "currency": {"data_type": "text"},
        },
        # one row per version of a contract (helpers.contract_rows)
        "contracts": {
            "contract_id": {"data_type": "text", "nullable": False, "primary_key": True},
            "start_date": {"data_type": "date", "nullable": False, "primary_key": True},
            "end_date": {"data_type": "date"},
            "customer_id": {"data_type": "text", "nullable": False},
            "customer_name": {"data_type": "text"},
            "country": {"data_type": "text"},
            "plan": {"data_type": "text", "nullable": False},
            "amount": {"data_type": "decimal", "nullable": False},
            "currency": {"data_type": "text", "nullable": False},
            "billing_interval": {"data_type": "text", "nullable": False},
            "interval_count": {"data_type": "bigint", "nullable": False},
            "quantity": {"data_type": "bigint", "nullable": False},
            "discount_percent": {"data_type": "decimal", "nullable": False},
            "file_line": {"data_type": "bigint"},
        },
        # customers of several sources merged into one (helpers.customer_mapping_rows)
        "customer_mapping": {
            "billing_account": {"data_type": "text", "nullable": False, "primary_key": True},
            "customer_id": {"data_type": "text", "nullable": False, "primary_key": True},
            "customer_key": {"data_type": "text", "nullable": False},
            "file_line": {"data_type": "bigint"},
        },
    },
)


@dlt.source(name="finance", max_table_nesting=0)
def finance_source(
    spend_csv: str | None = None,
    gross_margin_csv: str | None = None,
    pnl_csv: str | None = None,
    contracts_csv: str | None = None,
    customer_mapping_csv: str | None = None,
) -> list[DltResource]:
    """Args:
    spend_csv: path of month,channel,amount,currency rows (sales and marketing spend).
    gross_margin_csv: path of month,gross_margin rows (a fraction, 0.8 = 80%).
    pnl_csv: path of month,revenue,operating_expenses,net_burn,currency rows (the monthly P&L; optional).
    contracts_csv: path of the contracts billed outside Stripe, one row per version (settings.CONTRACT_COLUMNS).
    customer_mapping_csv: path of billing_account,customer_id,customer_key rows: customers of several sources
        that are one company.
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

    def contracts():
        if contracts_csv:
            yield from contract_rows(Path(contracts_csv))

    def customer_mapping():
        if customer_mapping_csv:
            yield from customer_mapping_rows(Path(customer_mapping_csv))

    return [
        dlt.resource(
            spend,
            name="marketing_spend",
            write_disposition="replace",
            columns=TABLES.hints("marketing_spend"),
        ),
        dlt.resource(
            gross_margin,
            name="gross_margin",
            write_disposition="replace",
            columns=TABLES.hints("gross_margin"),
        ),
        dlt.resource(pnl, name="pnl", write_disposition="replace", columns=TABLES.hints("pnl")),
        dlt.resource(contracts, name="contracts", write_disposition="replace", columns=TABLES.hints("contracts")),
        dlt.resource(
            customer_mapping,
            name="customer_mapping",
            write_disposition="replace",
            columns=TABLES.hints("customer_mapping"),
        ),
    ]
