"""What the report shows: its cards and figures, read from the marts for one month (load), and how a
number is written (fmt)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

import psycopg2.errors

from saas_metrics.config import ConfigError, dbt_project_vars

HISTORY_MONTHS = 12  # the MRR chart, the waterfall table and the cohort heatmap look this far back
TOP_CUSTOMERS = 10
CHURN_RISK_ROWS = 15


class ReportError(ConfigError):
    """The report cannot be made for what was asked (no such month, nothing built yet)."""


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
    # the month's figures that moved since it was reported (metric, reported_value, current_value, published_at of
    # metric_restatements: METRICS.md "Month close: as reported and as restated"); the report shows the current ones
    # and says so
    restatements: list[dict] = field(default_factory=list)
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
        restatements = []
        cur.execute("select to_regclass('marts.metric_restatements') is not null")
        if cur.fetchone()[0]:  # marts published before the month close existed have none
            restatements = _rows(
                cur,
                "select metric, reported_value, current_value, published_at from marts.metric_restatements "
                "where month = %s and metric = any(%s) order by array_position(%s, metric)",
                (month, list(RESTATED_SHOWN), list(RESTATED_SHOWN)),
            )
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
        restatements=restatements,
    )
    data.figures = key_figures(data)
    return data


# the figures of the cards and the waterfall whose restatement the report names, in this order, with their kind
RESTATED_SHOWN = {
    "saas_kpis_monthly.mrr": ("MRR", "money"),
    "saas_kpis_monthly.paying_customers": ("active customers", "count"),
    "saas_kpis_monthly.logo_churn_rate": ("monthly churn", "rate"),
    "saas_kpis_monthly.ltv_to_cac": ("LTV:CAC", "ratio"),
    "mrr_monthly.new_mrr": ("new MRR", "money"),
    "mrr_monthly.expansion_mrr": ("expansion MRR", "money"),
    "mrr_monthly.churned_mrr": ("churned MRR", "money"),
}


def restatement_warning(data: ReportData) -> str | None:
    """One sentence naming the month's figures that moved since they were reported, or None."""
    if not data.restatements:
        return None
    moved = ", ".join(
        f"{RESTATED_SHOWN[r['metric']][0]} {fmt(r['reported_value'], RESTATED_SHOWN[r['metric']][1])} -> "
        f"{fmt(r['current_value'], RESTATED_SHOWN[r['metric']][1])}"
        for r in data.restatements
    )
    reported = f"{data.restatements[0]['published_at']:%Y-%m-%d}"
    return (
        f"Restated: {month_label(data.month)} has moved since it was reported on {reported} ({moved}); this report "
        "shows the figures as they are today (marts.metric_restatements, marts.mrr_restatement_customers)."
    )


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
    figures["restated"] = {
        r["metric"]: [number(r["reported_value"]), number(r["current_value"])] for r in data.restatements
    }
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
    restated = restatement_warning(data)
    if restated:
        lines.append(f"  {restated}")
    return lines
