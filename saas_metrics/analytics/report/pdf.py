"""The report as a PDF of the same content: matplotlib's PdfPages, A4 landscape pages."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

from saas_metrics.analytics.report.charts import (  # noqa: E402
    COLORS,
    GREEN,
    GREY,
    RED,
    draw_bars,
    draw_cohort_heatmap,
    draw_mrr_chart,
)
from saas_metrics.analytics.report.data import (  # noqa: E402
    TOP_CUSTOMERS,
    ReportData,
    fmt,
    month_label,
    restatement_warning,
)
from saas_metrics.analytics.report.tables import (  # noqa: E402
    ACCOUNT_HEADERS,
    WATERFALL_HEADERS,
    account_rows,
    concentration_warning,
    risk_rows,
    top_rows,
    waterfall_rows,
)

A4_LANDSCAPE = (11.69, 8.27)


def _page(pdf: PdfPages, data: ReportData, heading: str):
    fig = plt.figure(figsize=A4_LANDSCAPE)
    fig.text(0.04, 0.955, f"SaaS metrics report - {month_label(data.month)}", fontsize=16, weight="bold")
    fig.text(0.96, 0.955, heading, fontsize=10, ha="right", color=GREY)
    return fig


def _pdf_table(
    ax, headers: list[str], rows: list[list[str]], title: str, widths: list[float] | None = None, text_columns: int = 1
) -> None:
    ax.axis("off")
    ax.set_title(title, loc="left")
    if not rows:
        ax.text(0, 0.9, "None.", transform=ax.transAxes)
        return
    table = ax.table(cellText=rows, colLabels=headers, loc="upper left", cellLoc="right", colWidths=widths)
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1, 1.25)
    for (row, col), cell in table.get_celld().items():
        cell.set_edgecolor("#d0d7de")
        cell.set_linewidth(0.4)
        if row == 0:
            cell.set_facecolor("#f6f8fa")
            cell.set_text_props(weight="bold")
        if col < text_columns:
            cell.get_text().set_horizontalalignment("left")


def render_pdf(data: ReportData, path: Path) -> None:
    with PdfPages(path, metadata={"Title": f"SaaS metrics report {data.month:%Y-%m}", "CreationDate": None}) as pdf:
        # 1: cards and the MRR chart
        fig = _page(pdf, data, f"The last complete month; amounts in {data.currency}")
        for i, card in enumerate(data.cards):
            x = 0.04 + i * 0.235
            color = {"good": GREEN, "bad": RED}.get(card.direction, GREY)
            fig.patches.append(
                matplotlib.patches.FancyBboxPatch(
                    (x, 0.72),
                    0.215,
                    0.17,
                    boxstyle="round,pad=0.005",
                    transform=fig.transFigure,
                    facecolor="white",
                    edgecolor=color,
                    linewidth=1.5,
                )
            )
            fig.text(x + 0.012, 0.855, card.label.upper(), fontsize=9, color=GREY)
            fig.text(x + 0.012, 0.78, card.display(), fontsize=22, weight="bold")
            previous = f"{data.previous_month:%b}" if data.previous_month else "previous month"
            arrow = ""
            if card.value is not None and card.previous is not None and card.value != card.previous:
                arrow = "▲ " if card.value > card.previous else "▼ "
            change = card.change(previous, data.mrr_growth_rate if card.key == "mrr" else None)
            fig.text(x + 0.012, 0.74, arrow + change, fontsize=9, color=color)
        restated = restatement_warning(data)
        if restated:  # under the cards, wrapped to the page's width
            fig.text(0.04, 0.698, textwrap.fill(restated, 160), fontsize=7.5, color="#9a6700", weight="bold", va="top")
        ax = fig.add_axes((0.07, 0.1, 0.84, 0.52))
        draw_mrr_chart(ax, data)
        pdf.savefig(fig)
        plt.close(fig)
        # 2: cohorts and revenue breakdown
        fig = _page(pdf, data, "Retention and revenue breakdown")
        draw_cohort_heatmap(fig.add_axes((0.12, 0.5, 0.8, 0.4)), data)
        draw_bars(fig.add_axes((0.12, 0.1, 0.33, 0.3)), data.plans, "MRR by plan", COLORS["bar"], data.currency)
        draw_bars(
            fig.add_axes((0.6, 0.1, 0.33, 0.3)), data.segments, data.segment_title, COLORS["segment"], data.currency
        )
        pdf.savefig(fig)
        plt.close(fig)
        # 3: top customers, the waterfall
        fig = _page(pdf, data, "Customers and the MRR waterfall")
        warning = concentration_warning(data)
        if warning:
            fig.text(0.04, 0.9, warning, fontsize=9.5, color="#9a6700", weight="bold")
        _pdf_table(
            fig.add_axes((0.04, 0.5, 0.4, 0.36)),
            ["#", "Customer", "MRR", "Share"],
            top_rows(data),
            f"Top {TOP_CUSTOMERS} customers",
            [0.06, 0.5, 0.24, 0.2],
            text_columns=2,
        )
        if account_rows(data):
            _pdf_table(
                fig.add_axes((0.52, 0.5, 0.44, 0.36)),
                ACCOUNT_HEADERS,
                account_rows(data),
                "MRR by billing account",
                [0.34, 0.22, 0.24, 0.2],
            )
        _pdf_table(fig.add_axes((0.04, 0.04, 0.92, 0.4)), WATERFALL_HEADERS, waterfall_rows(data), "MRR waterfall")
        pdf.savefig(fig)
        plt.close(fig)
        # 4: churn risk
        fig = _page(pdf, data, "Churn risk today")
        _pdf_table(
            fig.add_axes((0.04, 0.05, 0.92, 0.83)),
            ["Customer", "Health", "Why", "MRR at risk"],
            risk_rows(data),
            f"Churn risk ({data.churn_risk_customers} customers, {fmt(data.churn_risk_mrr)} {data.currency} at risk)",
            [0.2, 0.1, 0.55, 0.15],
            text_columns=3,
        )
        pdf.savefig(fig)
        plt.close(fig)
