"""The metrics report: one self-contained HTML file and a PDF of the same content, for one month.

Every number comes from the marts (README "The report" lists which); this module only selects,
formats and draws them. Charts are drawn by matplotlib: inline SVG in the HTML (no script, no CDN,
opens offline), the same figures on the PDF's pages (matplotlib's PdfPages).

Layout of what is written, per month (a rerun overwrites that month's files, others are kept):
    $SAAS_METRICS_HOME/reports/2026-01/saas-metrics-report-2026-01.html
    $SAAS_METRICS_HOME/reports/2026-01/saas-metrics-report-2026-01.pdf
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import psycopg2.errors  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

from saas_metrics.config import ConfigError, dbt_project_vars  # noqa: E402

HISTORY_MONTHS = 12  # the MRR chart, the waterfall table and the cohort heatmap look this far back
TOP_CUSTOMERS = 10
CHURN_RISK_ROWS = 15

GREEN, RED, GREY = "#1a7f37", "#cf222e", "#57606a"
COLORS = {"new": "#4c78a8", "expansion": "#72b7b2", "total": "#e45756", "bar": "#4c78a8", "segment": "#54a24b"}


class ReportError(ConfigError):
    """The report cannot be made for what was asked (no such month, nothing built yet)."""


@lru_cache(maxsize=1)
# -- what the report shows ----------------------------------------------------------------------------
@dataclass
class Card:
    key: str
    label: str
    value: Decimal | int | None
    previous: Decimal | int | None
    higher_is_better: bool = True
    kind: str = "money"  # money, count, rate, ratio

    @property
    def direction(self) -> str:
        """good / bad / flat / n/a against the previous month."""
        if self.value is None or self.previous is None:
            return "n/a"
        if self.value == self.previous:
            return "flat"
        return "good" if (self.value > self.previous) == self.higher_is_better else "bad"

    def display(self, value=None) -> str:
        value = self.value if value is None else value
        return fmt(value, self.kind)

    def change(self, previous_label: str, growth_rate: Decimal | None = None) -> str:
        """Against the previous month: '+4,801 (+6.3%) vs Sep', '+45 vs Sep', 'from 5.8% in Sep'."""
        if self.value is None or self.previous is None:
            return f"{previous_label}: {self.display(self.previous)}"
        if self.kind in ("money", "count"):
            sign = "+" if self.value >= self.previous else "-"
            pct = f" ({growth_rate * 100:+.1f}%)" if growth_rate is not None else ""
            return f"{sign}{fmt(abs(self.value - self.previous), self.kind)}{pct} vs {previous_label}"
        return f"from {self.display(self.previous)} in {previous_label}"


@dataclass
class ReportData:
    month: dt.date
    previous_month: dt.date | None
    as_of: dt.date | None  # the day the marts were built for ("today" of their current month)
    currency: str
    cards: list[Card]
    mrr_growth_rate: Decimal | None
    mrr_change: Decimal | None
    history: list[dict]  # mrr_monthly rows, oldest first, up to the report month
    cohorts: list[dict]  # cohort_retention rows of the last HISTORY_MONTHS cohorts, complete months only
    plans: list[tuple[str, Decimal]]
    segment_title: str
    segments: list[tuple[str, Decimal]]
    top_customers: list[dict]  # customer_id, mrr, share
    concentration_threshold: Decimal
    churn_risk: list[dict]
    churn_risk_customers: int
    churn_risk_mrr: Decimal
    # MRR by billing account at the month's end: (account, mrr, paying customers), largest first; shown when
    # there are several (several Stripe accounts, the contracts file)
    accounts: list[tuple[str, Decimal, int]] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    @property
    def concentration_risks(self) -> list[dict]:
        # the rule of revenue_concentration.is_concentration_risk (share above the dbt var), for this month
        return [c for c in self.top_customers if c["share"] > self.concentration_threshold]


def fmt(value, kind: str = "money") -> str:
    if value is None:
        return "n/a"
    if kind == "money":
        return f"{Decimal(value).quantize(Decimal(1), rounding=ROUND_HALF_UP) + 0:,.0f}"  # + 0: -0.3 shows 0, not -0
    if kind == "money2":
        return f"{Decimal(value):,.2f}"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "rate":
        return f"{Decimal(value) * 100:.1f}%"
    if kind == "ratio":
        return f"{Decimal(value):.2f}x"
    return str(value)


def month_label(month: dt.date) -> str:
    return f"{month:%B %Y}"


def _rows(cur, query: str, params=()) -> list[dict]:
    cur.execute(query, params)
    names = [c.name for c in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def segment_breakdown(cur, month: dt.date) -> tuple[str, list[tuple[str, Decimal]]]:
    """MRR by segment at the month's end: (title, [(segment, mrr)]), largest first, from `mrr_by_segment`
    (its acquisition-channel dimension; `(none)` for customers without a channel)."""
    cur.execute(
        """
        select segment, mrr
        from marts.mrr_by_segment
        where month = %s and dimension = 'acquisition_channel' and mrr > 0
        order by 2 desc, 1
        """,
        (month,),
    )
    return "MRR by acquisition channel", [(name, mrr) for name, mrr in cur.fetchall()]


def last_complete_month(cur) -> dt.date:
    cur.execute("select max(month) from marts.mrr_monthly where is_complete_month")
    month = cur.fetchone()[0]
    if month is None:
        raise ReportError("no complete month in marts.mrr_monthly yet: run the refresh first (saas-metrics run)")
    return month


def load(conn, month: dt.date | None = None) -> ReportData:
    """Everything the report shows, read from the marts, for `month` (default: the last complete one)."""
    with conn.cursor() as cur:
        try:
            latest = last_complete_month(cur)
        except psycopg2.errors.UndefinedTable as exc:  # marts not built at all
            raise ReportError(
                f"the marts are not built yet ({str(exc).splitlines()[0]}): run the refresh first"
            ) from exc
        month = month or latest
        if month > latest:
            raise ReportError(f"{month:%Y-%m} is not complete yet: the last complete month is {latest:%Y-%m}")
        cur.execute("select min(month) from marts.mrr_monthly")
        first = cur.fetchone()[0]
        if month < first:
            raise ReportError(f"no data for {month:%Y-%m}: marts.mrr_monthly starts at {first:%Y-%m}")
        cur.execute("select max(snapshot_date) from marts.customer_mrr_monthly")
        as_of = cur.fetchone()[0]
        kpis = {
            row["month"]: row
            for row in _rows(
                cur,
                "select month, mrr, paying_customers, logo_churn_rate, gross_mrr_churn_rate, ltv_to_cac, "
                "mrr_growth_rate from marts.saas_kpis_monthly where month <= %s order by month desc limit 2",
                (month,),
            )
        }
        current = kpis[month]
        previous_month = max((m for m in kpis if m < month), default=None)
        previous = kpis.get(previous_month, {})
        cards = [
            Card("mrr", "MRR", current["mrr"], previous.get("mrr")),
            Card(
                "paying_customers",
                "Active customers",
                current["paying_customers"],
                previous.get("paying_customers"),
                kind="count",
            ),
            Card(
                "logo_churn_rate",
                "Monthly churn",
                current["logo_churn_rate"],
                previous.get("logo_churn_rate"),
                higher_is_better=False,
                kind="rate",
            ),
            Card("ltv_to_cac", "LTV:CAC", current["ltv_to_cac"], previous.get("ltv_to_cac"), kind="ratio"),
        ]
        history = list(
            reversed(
                _rows(
                    cur,
                    "select * from marts.mrr_monthly where month <= %s order by month desc limit %s",
                    (month, HISTORY_MONTHS),
                )
            )
        )
        cohorts = _rows(
            cur,
            """
            select cohort_month, months_since_start, cohort_customers, active_customers, logo_retention,
                revenue_retention
            from marts.cohort_retention
            where is_complete_month and month <= %s
                and cohort_month > (%s::date - make_interval(months => %s))
            order by cohort_month, months_since_start
            """,
            (month, month, HISTORY_MONTHS),
        )
        cur.execute(
            """
            select coalesce(product_name, product_id, 'unknown'), sum(mrr)
            from marts.mrr_by_plan
            where month = %s and mrr > 0
            group by 1
            order by 2 desc, 1
            """,
            (month,),
        )
        plans = cur.fetchall()
        segment_title, segments = segment_breakdown(cur, month)
        cur.execute(
            "select segment, mrr, customers from marts.mrr_by_segment"
            " where month = %s and dimension = 'billing_account' and customers > 0 order by 2 desc, 1",
            (month,),
        )
        accounts = cur.fetchall()
        top = _rows(
            cur,
            "select customer_id, mrr from marts.customer_mrr_monthly where month = %s and mrr > 0 "
            "order by mrr desc, customer_id limit %s",
            (month, TOP_CUSTOMERS),
        )
        total = current["mrr"]
        for row in top:
            row["share"] = (row["mrr"] / total) if total else Decimal(0)
        risk = _rows(
            cur,
            "select customer_id, mrr_at_risk, health_band, risk_flags, risk_reasons from marts.churn_risk "
            "order by mrr_at_risk desc, customer_id limit %s",
            (CHURN_RISK_ROWS,),
        )
        cur.execute("select count(*), coalesce(sum(mrr_at_risk), 0) from marts.churn_risk")
        risk_customers, risk_mrr = cur.fetchone()
    data = ReportData(
        month=month,
        previous_month=previous_month,
        as_of=as_of,
        currency=str(dbt_project_vars().get("reporting_currency", "usd")).upper(),
        cards=cards,
        mrr_growth_rate=current["mrr_growth_rate"],
        mrr_change=(current["mrr"] - previous["mrr"]) if previous.get("mrr") is not None else None,
        history=history,
        cohorts=cohorts,
        plans=plans,
        segment_title=segment_title,
        segments=segments,
        top_customers=top,
        concentration_threshold=Decimal(str(dbt_project_vars().get("concentration_risk_share", 0.2))),
        churn_risk=risk,
        churn_risk_customers=risk_customers,
        churn_risk_mrr=risk_mrr,
        accounts=accounts,
    )
    data.figures = key_figures(data)
    return data


def key_figures(data: ReportData) -> dict:
    """The report's headline numbers as plain JSON values (embedded in the HTML; Dagster metadata)."""

    def number(value):
        return None if value is None else float(value)

    figures = {"month": f"{data.month:%Y-%m}", "currency": data.currency}
    for card in data.cards:
        figures[card.key] = number(card.value)
        figures[f"previous_{card.key}"] = number(card.previous)
    figures["mrr_change"] = number(data.mrr_change)
    figures["mrr_growth_rate"] = number(data.mrr_growth_rate)
    figures["top_customer_share"] = number(data.top_customers[0]["share"]) if data.top_customers else None
    figures["concentration_risks"] = [c["customer_id"] for c in data.concentration_risks]
    figures["churn_risk_customers"] = data.churn_risk_customers
    figures["churn_risk_mrr"] = number(data.churn_risk_mrr)
    figures["mrr_by_account"] = {account: number(mrr) for account, mrr, _ in data.accounts}
    return figures


def card_lines(data: ReportData) -> list[str]:
    """The cards as text (the weekly summary's email and webhook message)."""
    previous = f"{data.previous_month:%B}" if data.previous_month else "the month before"
    lines = [f"{month_label(data.month)}, the last complete month ({data.currency}):"]
    for card in data.cards:
        change = card.change(previous, data.mrr_growth_rate if card.key == "mrr" else None)
        marker = {"good": "better", "bad": "worse", "flat": "same", "n/a": ""}[card.direction]
        lines.append(f"  {card.label}: {card.display()}, {change}{' - ' + marker if marker else ''}")
    if data.concentration_risks:
        names = ", ".join(f"{c['customer_id']} {fmt(c['share'], 'rate')}" for c in data.concentration_risks)
        lines.append(f"  Warning: concentration risk - {names} of MRR")
    return lines


# -- charts (shared by the HTML and the PDF) -------------------------------------------------------------
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


# -- HTML -------------------------------------------------------------------------------------------------
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


def render_html(data: ReportData) -> str:
    title = f"SaaS metrics report - {month_label(data.month)}"
    warning = concentration_warning(data)
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


# -- PDF --------------------------------------------------------------------------------------------------
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


# -- files ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportFiles:
    month: dt.date
    html: Path
    pdf: Path
    figures: dict
    cards: list[str]


def report_dir(home: Path, month: dt.date) -> Path:
    return Path(home) / "reports" / f"{month:%Y-%m}"


def _write_atomically(path: Path, write) -> None:
    """Readers see the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_report(conn, home: Path, month: dt.date | None = None) -> ReportFiles:
    """Render the HTML and the PDF for `month` (default: the last complete month) under home/reports/."""
    data = load(conn, month)
    folder = report_dir(home, data.month)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"saas-metrics-report-{data.month:%Y-%m}"
    html_path, pdf_path = folder / f"{stem}.html", folder / f"{stem}.pdf"
    page = render_html(data)
    _write_atomically(html_path, lambda p: p.write_text(page, encoding="utf-8"))
    _write_atomically(pdf_path, lambda p: render_pdf(data, p))
    return ReportFiles(data.month, html_path, pdf_path, data.figures, card_lines(data))


def parse_month(text: str) -> dt.date:
    try:
        return dt.datetime.strptime(text, "%Y-%m").date()
    except ValueError:
        raise ReportError(f"--month must look like 2026-01, got {text!r}") from None
