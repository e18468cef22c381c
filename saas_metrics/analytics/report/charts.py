"""The report's charts, drawn by matplotlib: shared by the HTML (inline SVG) and the PDF (its pages)."""

from __future__ import annotations

import io
from decimal import Decimal

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from saas_metrics.analytics.report.data import HISTORY_MONTHS, ReportData  # noqa: E402

GREEN, RED, GREY = "#1a7f37", "#cf222e", "#57606a"
COLORS = {"new": "#4c78a8", "expansion": "#72b7b2", "total": "#e45756", "bar": "#4c78a8", "segment": "#54a24b"}


plt.rcParams.update(
    {
        "font.family": "DejaVu Sans",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 11,
        "axes.titleweight": "bold",
        "axes.titlelocation": "left",
        "svg.fonttype": "path",  # glyphs as paths: the SVG looks the same without the font installed
        "svg.hashsalt": "saas-metrics",  # the same data draws the same file
    }
)


def _money_axis(ax) -> None:
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))


def draw_mrr_chart(ax, data: ReportData) -> None:
    labels = [f"{row['month']:%b %y}" for row in data.history]
    x = np.arange(len(labels))
    new = np.array([float(row["new_mrr"]) for row in data.history])
    expansion = np.array([float(row["expansion_mrr"]) for row in data.history])
    total = np.array([float(row["ending_mrr"]) for row in data.history])
    ax.bar(x, new, color=COLORS["new"], label="New MRR", width=0.65)
    ax.bar(x, expansion, bottom=new, color=COLORS["expansion"], label="Expansion MRR", width=0.65)
    ax.set_xticks(x, labels)
    ax.set_ylabel(f"New + expansion ({data.currency})")
    _money_axis(ax)
    line_ax = ax.twinx()
    line_ax.spines["right"].set_visible(True)
    line_ax.plot(x, total, color=COLORS["total"], marker="o", linewidth=2.2, label="Total MRR")
    line_ax.set_ylim(0, max(total.max(), 1) * 1.15)
    line_ax.set_ylabel(f"Total MRR ({data.currency})")
    _money_axis(line_ax)
    ax.set_ylim(0, max((new + expansion).max(), 1) * 1.6)
    handles = ax.get_legend_handles_labels()
    line_handles = line_ax.get_legend_handles_labels()
    ax.legend(handles[0] + line_handles[0], handles[1] + line_handles[1], loc="upper left", frameon=False, ncol=3)
    ax.set_title(f"MRR, last {len(labels)} months")


def draw_cohort_heatmap(ax, data: ReportData) -> None:
    if not data.cohorts:
        ax.axis("off")
        ax.text(0.5, 0.5, f"No cohort started in the {HISTORY_MONTHS} months to this one.", ha="center")
        return
    cohorts = sorted({row["cohort_month"] for row in data.cohorts})
    width = max((row["months_since_start"] for row in data.cohorts), default=0) + 1
    grid = np.full((len(cohorts), width), np.nan)
    sizes = {}
    for row in data.cohorts:
        grid[cohorts.index(row["cohort_month"]), row["months_since_start"]] = float(row["logo_retention"])
        sizes[row["cohort_month"]] = row["cohort_customers"]
    # red to green; the scale starts at 50% or lower, so that a good business's cells still differ
    low = float(np.nanmin(grid)) if data.cohorts else 0.0
    vmin = min(0.5, np.floor(low * 10) / 10)
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=vmin, vmax=1, aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
        if not np.isnan(value):
            shade = (value - vmin) / (1 - vmin) if vmin < 1 else 1
            ax.text(
                j,
                i,
                f"{value:.0%}",
                ha="center",
                va="center",
                fontsize=7.5,
                color="black" if 0.2 < shade < 0.8 else "white",
            )
    ax.set_yticks(range(len(cohorts)), [f"{c:%Y-%m} ({sizes[c]})" for c in cohorts])
    ax.set_xticks(range(width), [str(m) for m in range(width)])
    ax.set_xlabel("Months since first payment")
    ax.set_ylabel("Cohort (customers)")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title("Cohort retention (share of customers still paying)")
    ax.figure.colorbar(image, ax=ax, fraction=0.03, pad=0.02, format=matplotlib.ticker.PercentFormatter(1.0))


def draw_bars(ax, rows: list[tuple[str, Decimal]], title: str, color: str, currency: str) -> None:
    rows = rows[:8]
    labels = [name for name, _ in rows][::-1]
    values = [float(value) for _, value in rows][::-1]
    bars = ax.barh(labels, values, color=color, height=0.6)
    total = sum(float(v) for _, v in rows) or 1
    for bar, value in zip(bars, values, strict=True):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f"  {value:,.0f} ({value / total:.0%})",
            va="center",
            fontsize=8,
        )
    ax.set_xlim(0, max(values, default=1) * 1.45)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlabel(currency)
    ax.set_title(title)


def mrr_figure(data: ReportData):
    fig, ax = plt.subplots(figsize=(10, 3.6))
    draw_mrr_chart(ax, data)
    fig.tight_layout()
    return fig


def cohort_figure(data: ReportData):
    rows = len({row["cohort_month"] for row in data.cohorts})
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.3 * max(rows, 2)))
    draw_cohort_heatmap(ax, data)
    fig.tight_layout()
    return fig


def breakdown_figure(data: ReportData):
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 2.9))
    draw_bars(left, data.plans, "MRR by plan", COLORS["bar"], data.currency)
    draw_bars(right, data.segments, data.segment_title, COLORS["segment"], data.currency)
    fig.tight_layout()
    return fig


def svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]
