"""The report as one self-contained HTML file: inline CSS and SVG charts, no script, no CDN (opens offline)."""

from __future__ import annotations

import html
import json

from saas_metrics.analytics.report.charts import breakdown_figure, cohort_figure, mrr_figure, svg
from saas_metrics.analytics.report.data import (
    CHURN_RISK_ROWS,
    TOP_CUSTOMERS,
    Card,
    ReportData,
    fmt,
    month_label,
    restatement_warning,
)
from saas_metrics.analytics.report.tables import (
    ACCOUNT_HEADERS,
    WATERFALL_HEADERS,
    account_rows,
    concentration_warning,
    risk_rows,
    top_rows,
    waterfall_rows,
)

CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', Arial, sans-serif; color: #1f2328;
       margin: 0; background: #f6f8fa; }
main { max-width: 1040px; margin: 0 auto; padding: 24px 28px 40px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 10px; }
.sub { color: #57606a; font-size: 13px; margin-bottom: 18px; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; }
.card { border: 1px solid #d0d7de; border-radius: 8px; padding: 12px 14px; border-top: 4px solid #8c959f; }
.card.good { border-top-color: #1a7f37; } .card.bad { border-top-color: #cf222e; }
.card .label { color: #57606a; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 26px; font-weight: 600; margin: 4px 0; }
.card .delta { font-size: 12.5px; } .good .delta { color: #1a7f37; } .bad .delta { color: #cf222e; }
.flat .delta, .na .delta { color: #57606a; }
svg { width: 100%; height: auto; display: block; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; font-variant-numeric: tabular-nums; }
th, td { padding: 5px 8px; border-bottom: 1px solid #eaeef2; text-align: right; }
th { background: #f6f8fa; font-weight: 600; } td:first-child, th:first-child { text-align: left; }
td.text, th.text { text-align: left; }
.warning { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 8px 12px; margin: 10px 0;
           font-size: 13px; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
footer { color: #57606a; font-size: 11.5px; margin-top: 28px; }
"""


def _card_html(card: Card, data: ReportData) -> str:
    previous = f"{data.previous_month:%b}" if data.previous_month else "previous month"
    delta = card.change(previous, data.mrr_growth_rate if card.key == "mrr" else None)
    arrow = ""
    if card.value is not None and card.previous is not None and card.value != card.previous:
        arrow = "▲ " if card.value > card.previous else "▼ "
    css = {"n/a": "na"}.get(card.direction, card.direction)
    raw = "" if card.value is None else str(card.value)
    return (
        f'<div class="card {css}" data-metric="{card.key}" data-value="{raw}">'
        f'<div class="label">{html.escape(card.label)}</div><div class="value">{card.display()}</div>'
        f'<div class="delta">{arrow}{html.escape(delta)}</div></div>'
    )


def _table(headers: list[str], rows: list[list[str]], text_columns: int = 1, attrs: str = "") -> str:
    head = "".join(
        f'<th class="{"text" if i < text_columns else ""}">{html.escape(h)}</th>' for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"text" if i < text_columns else ""}">{html.escape(c)}</td>' for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table {attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(data: ReportData) -> str:
    title = f"SaaS metrics report - {month_label(data.month)}"
    warning = concentration_warning(data)
    restated = restatement_warning(data)
    as_of = f"{data.as_of:%Y-%m-%d}" if data.as_of else "the last build"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style>",
        f'<script type="application/json" id="report-figures">{json.dumps(data.figures)}</script>',
        "</head><body><main>",
        f"<h1>{html.escape(title)}</h1>",
        f'<div class="sub">The last complete month, from the marts as of {as_of}. Amounts in {data.currency}. '
        "Green and red: better or worse than the month before.</div>",
        '<section class="cards">' + "".join(_card_html(card, data) for card in data.cards) + "</section>",
        f'<div class="warning" id="restatement-warning">{html.escape(restated)}</div>' if restated else "",
        "<h2>Growth</h2>",
        svg(mrr_figure(data)),
        "<h2>Retention</h2>",
        svg(cohort_figure(data)),
        "<h2>Revenue breakdown</h2>",
        svg(breakdown_figure(data)),
        f'<div class="warning" id="concentration-warning">{html.escape(warning)}</div>' if warning else "",
        f"<h2>MRR by billing account, {month_label(data.month)}</h2>" if account_rows(data) else "",
        _table(ACCOUNT_HEADERS, account_rows(data), 1, 'id="mrr-by-account"') if account_rows(data) else "",
        f"<h2>Top {TOP_CUSTOMERS} customers, {month_label(data.month)}</h2>",
        _table(["#", "Customer", f"MRR ({data.currency})", "Share of MRR"], top_rows(data), 2, 'id="top-customers"'),
        "<h2>MRR waterfall</h2>",
        _table(WATERFALL_HEADERS, waterfall_rows(data), 1, 'id="waterfall"'),
        f"<h2>Churn risk today ({data.churn_risk_customers} customers, "
        f"{fmt(data.churn_risk_mrr)} {data.currency} MRR at risk)</h2>",
        _table(["Customer", "Health", "Why", f"MRR at risk ({data.currency})"], risk_rows(data), 3, 'id="churn-risk"')
        if data.churn_risk
        else "<p>No paying customer is flagged.</p>",
        f"<footer>saas-metrics. Sources: marts.saas_kpis_monthly, mrr_monthly, cohort_retention, mrr_by_plan, "
        f"customer_mrr_monthly, churn_risk. Churn risk is as of {as_of}; the largest {CHURN_RISK_ROWS} are listed. "
        "Definitions: METRICS.md.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(part for part in parts if part)
