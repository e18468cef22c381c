"""The metrics report: one self-contained HTML file and a PDF of the same content, for one month.

Every number comes from the marts (README "The report" lists which); this module only selects,
formats and draws them. Charts are drawn by matplotlib: inline SVG in the HTML (no script, no CDN,
opens offline), the same figures on the PDF's pages (matplotlib's PdfPages).

Layout of what is written, per month (a rerun overwrites that month's files, others are kept):
    $SAAS_METRICS_HOME/reports/2026-01/saas-metrics-report-2026-01.html
    $SAAS_METRICS_HOME/reports/2026-01/saas-metrics-report-2026-01.pdf
"""

from saas_metrics.analytics.report.data import (
    Card,
    ReportData,
    ReportError,
    card_lines,
    fmt,
    key_figures,
    load,
    month_label,
)
from saas_metrics.analytics.report.files import ReportFiles, parse_month, report_dir, write_report
from saas_metrics.analytics.report.html_page import render_html
from saas_metrics.analytics.report.pdf import render_pdf
from saas_metrics.analytics.report.tables import account_rows

__all__ = [
    "Card",
    "ReportData",
    "ReportError",
    "ReportFiles",
    "account_rows",
    "card_lines",
    "fmt",
    "key_figures",
    "load",
    "month_label",
    "parse_month",
    "render_html",
    "render_pdf",
    "report_dir",
    "write_report",
]
