"""The report's tables as rows of text, and its concentration warning: shared by the HTML and the PDF."""

from __future__ import annotations

from decimal import Decimal

from saas_metrics.analytics.report.data import ReportData, fmt


def waterfall_rows(data: ReportData) -> list[list[str]]:
    return [
        [
            f"{row['month']:%Y-%m}",
            fmt(row["starting_mrr"]),
            fmt(row["new_mrr"]),
            fmt(row["expansion_mrr"]),
            fmt(row["reactivation_mrr"]),
            fmt(-row["contraction_mrr"]),
            fmt(-row["churned_mrr"]),
            fmt(row["fx_impact"]),
            fmt(row["ending_mrr"]),
            fmt(row["ending_customers"], "count"),
        ]
        for row in reversed(data.history)
    ]


WATERFALL_HEADERS = [
    "Month",
    "Starting",
    "New",
    "Expansion",
    "Reactivation",
    "Contraction",
    "Churned",
    "FX",
    "Ending",
    "Customers",
]


def top_rows(data: ReportData) -> list[list[str]]:
    return [
        [str(i), row["customer_id"], fmt(row["mrr"], "money2"), fmt(row["share"], "rate")]
        for i, row in enumerate(data.top_customers, start=1)
    ]


def account_rows(data: ReportData) -> list[list[str]]:
    """MRR by billing account, with its share of the total (empty with a single account)."""
    if len(data.accounts) < 2:
        return []
    total = sum(mrr for _, mrr, _ in data.accounts)
    return [
        [account, str(customers), fmt(mrr, "money2"), fmt(mrr / total if total else Decimal(0), "rate")]
        for account, mrr, customers in data.accounts
    ]


ACCOUNT_HEADERS = ["Billing account", "Paying customers", "MRR", "Share of MRR"]


def risk_rows(data: ReportData) -> list[list[str]]:
    return [
        [
            row["customer_id"],
            row["health_band"] or "no activity",
            row["risk_reasons"],
            fmt(row["mrr_at_risk"], "money2"),
        ]
        for row in data.churn_risk
    ]


def concentration_warning(data: ReportData) -> str | None:
    if not data.concentration_risks:
        return None
    names = ", ".join(f"{c['customer_id']} ({fmt(c['share'], 'rate')})" for c in data.concentration_risks)
    return (
        f"Concentration risk: {names} of MRR - above the {fmt(data.concentration_threshold, 'rate')} "
        "threshold (dbt var concentration_risk_share)."
    )
