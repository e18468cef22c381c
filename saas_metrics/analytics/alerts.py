"""Alerts: what is worth telling someone, read from the marts, delivered once.

Every alert has a key naming the event (`churn:cus_123:2026-11-20`); a ledger table
`ops.alert_log` in the warehouse records the keys delivered, so an event is announced once however
often the sensors evaluate it (a rerun, a retried run, two sensors racing). A key is written in the
same transaction as its delivery: when delivery fails, nothing is recorded and the next evaluation
tries again.

Channels (README "Configuration", "Operating it in Dagster"):
a Slack-compatible webhook (JSON `{"text": ...}`) and email over SMTP.
With neither configured, alerts are only logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import smtplib
import urllib.request
from dataclasses import dataclass
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path

import psycopg2

from saas_metrics.config import AlertSettings

log = logging.getLogger(__name__)

OPS_SCHEMA = "ops"
# MRR milestones: 1k, 5k, 10k, 25k, 50k, 100k, 250k, 500k, 1M, ... (reporting currency)
MILESTONES = [Decimal(m) * Decimal(10) ** e for e in range(3, 10) for m in ((1, 5) if e == 3 else (1, 2.5, 5))]
# churns older than this are history, not news: the first run on an old account does not replay them
CHURN_LOOKBACK_DAYS = 7


@dataclass(frozen=True)
class Alert:
    key: str
    title: str
    text: str
    attachments: tuple[str, ...] = ()  # files attached to the email (the report); the text names them

    def message(self) -> str:
        return f"{self.title}\n{self.text}" if self.text else self.title


class DeliveryError(Exception):
    """A channel refused or could not be reached; the alert stays pending."""


# -- what to say ----------------------------------------------------------------------------------
def _money(value) -> str:
    return f"{Decimal(value):,.2f}"


def revenue_alerts(conn, settings: AlertSettings, today: dt.date | None = None) -> list[Alert]:
    """The alerts the marts call for now (already delivered ones included: the ledger filters)."""
    today = today or dt.datetime.now(dt.UTC).date()
    threshold = Decimal(str(settings.churn_mrr_threshold))
    alerts: list[Alert] = []
    with conn.cursor() as cur:
        cur.execute(
            """
            select m.customer_id, m.movement_date, m.mrr_before, c.email
            from marts.mrr_movements as m
            left join marts.customer_mrr_current as c on c.customer_id = m.customer_id
            where m.movement_type = 'churn' and m.mrr_before >= %s and m.movement_date > %s
            order by m.movement_date, m.customer_id
            """,
            (threshold, today - dt.timedelta(days=CHURN_LOOKBACK_DAYS)),
        )
        for customer, day, mrr, email in cur.fetchall():
            alerts.append(
                Alert(
                    f"churn:{customer}:{day}",
                    f"Churn: {customer} ({email or 'no email'}) left on {day}",
                    f"MRR lost: {_money(mrr)}",
                )
            )
        cur.execute(
            """
            select customer_id, email, mrr, pending_churn_mrr, scheduled_cancel_at
            from marts.customer_mrr_current
            where has_scheduled_cancellation and is_paying and mrr >= %s
            order by customer_id
            """,
            (threshold,),
        )
        for customer, email, mrr, pending, cancel_at in cur.fetchall():
            when = cancel_at.date().isoformat() if cancel_at else "the end of the period"
            alerts.append(
                Alert(
                    f"scheduled_cancellation:{customer}:{cancel_at.date() if cancel_at else 'period_end'}",
                    f"Cancellation scheduled: {customer} ({email or 'no email'}) leaves at {when}",
                    f"MRR {_money(mrr)}, of which {_money(pending)} is set to churn",
                )
            )
        cur.execute(
            """
            select month, logo_churn_rate, nrr
            from marts.saas_kpis_monthly
            where is_complete_month
            order by month desc
            limit 1
            """
        )
        row = cur.fetchone()
        if row:
            month, churn, nrr = row
            if churn is not None and churn > Decimal(str(settings.logo_churn_threshold)):
                alerts.append(
                    Alert(
                        f"logo_churn:{month:%Y-%m}",
                        f"Logo churn {churn:.1%} in {month:%B %Y}",
                        f"above the {settings.logo_churn_threshold:.0%} alert threshold",
                    )
                )
            if nrr is not None and nrr < Decimal(str(settings.nrr_threshold)):
                alerts.append(
                    Alert(
                        f"nrr:{month:%Y-%m}",
                        f"Net revenue retention {nrr:.1%} in {month:%B %Y}",
                        f"below {settings.nrr_threshold:.0%}",
                    )
                )
        cur.execute("select coalesce(sum(mrr), 0) from marts.customer_mrr_current where is_paying")
        mrr = cur.fetchone()[0]
        reached = [m for m in MILESTONES if mrr >= m]
        if reached:
            milestone = reached[-1]
            alerts.append(
                Alert(
                    f"milestone:{int(milestone)}",
                    f"MRR milestone: {_money(milestone)} crossed",
                    f"MRR is {_money(mrr)}",
                )
            )
    return alerts


def weekly_summary(conn, today: dt.date | None = None, report=None) -> Alert:
    """MRR change, new and churned customers, and the largest movements of the last 7 days; with
    `report` (saas_metrics.analytics.report.ReportFiles), the last complete month's cards and the report's files."""
    today = today or dt.datetime.now(dt.UTC).date()
    since = today - dt.timedelta(days=7)
    with conn.cursor() as cur:
        cur.execute("select coalesce(sum(mrr), 0) from marts.customer_mrr_current where is_paying")
        mrr_now = cur.fetchone()[0]
        cur.execute(
            """
            select
                coalesce(sum(mrr_change), 0),
                count(*) filter (where movement_type = 'new'),
                count(*) filter (where movement_type = 'churn'),
                count(*) filter (where movement_type = 'reactivation')
            from marts.mrr_movements
            where movement_date > %s and movement_date <= %s
            """,
            (since, today),
        )
        change, new, churned, reactivated = cur.fetchone()
        cur.execute(
            """
            select customer_id, movement_date, movement_type, mrr_change
            from marts.mrr_movements
            where movement_date > %s and movement_date <= %s
            order by abs(mrr_change) desc, customer_id
            limit 3
            """,
            (since, today),
        )
        notable = cur.fetchall()
    year, week, _ = today.isocalendar()
    lines = [
        f"MRR {_money(mrr_now)} ({'+' if change >= 0 else ''}{_money(change)} in 7 days)",
        f"New customers: {new}, churned: {churned}, reactivated: {reactivated}",
    ]
    if notable:
        lines.append("Largest movements:")
        lines += [f"  {day} {customer} {kind} {_money(value)}" for customer, day, kind, value in notable]
    attachments: tuple[str, ...] = ()
    if report is not None:
        lines += ["", *report.cards, "", f"Report (attached to the email): {report.html}", f"  PDF: {report.pdf}"]
        attachments = (str(report.html), str(report.pdf))
    return Alert(
        f"weekly_summary:{year}-W{week:02d}",
        f"Weekly SaaS summary, week of {since} to {today}",
        "\n".join(lines),
        attachments,
    )


# -- delivering, once -----------------------------------------------------------------------------
def ensure_ledger(conn) -> None:
    with conn.cursor() as cur:
        cur.execute(f"create schema if not exists {OPS_SCHEMA}")
        cur.execute(
            f"""
            create table if not exists {OPS_SCHEMA}.alert_log (
                alert_key text primary key,
                title text not null,
                delivered_at timestamptz not null default now(),
                channels text not null
            )
            """
        )
    conn.commit()


def send(alert: Alert, settings: AlertSettings) -> list[str]:
    """Deliver to every configured channel; raise DeliveryError naming the first that failed."""
    for channel in settings.channels:
        try:
            if channel == "webhook":
                _post_webhook(alert, settings)
            else:
                _send_email(alert, settings)
        except (OSError, smtplib.SMTPException, urllib.error.URLError) as exc:
            raise DeliveryError(f"{channel}: {exc}") from exc
    return settings.channels


def _post_webhook(alert: Alert, settings: AlertSettings) -> None:
    body = json.dumps({"text": alert.message()}).encode()
    request = urllib.request.Request(
        settings.webhook_url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status >= 300:
            raise OSError(f"webhook answered HTTP {response.status}")


def _send_email(alert: Alert, settings: AlertSettings) -> None:
    message = EmailMessage()
    message["Subject"] = f"[saas-metrics] {alert.title}"
    message["From"] = settings.email_from
    message["To"] = ", ".join(settings.email_to)
    message["X-Saas-Metrics-Alert"] = alert.key
    message.set_content(alert.message())
    for attachment in map(Path, alert.attachments):
        if attachment.exists():
            subtype = {".html": ("text", "html"), ".pdf": ("application", "pdf")}.get(
                attachment.suffix, ("application", "octet-stream")
            )
            message.add_attachment(
                attachment.read_bytes(), maintype=subtype[0], subtype=subtype[1], filename=attachment.name
            )
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=10) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password or "")
        smtp.send_message(message)


def deliver(database_url: str, alerts: list[Alert], settings: AlertSettings) -> tuple[list[Alert], list[str]]:
    """Deliver the alerts not delivered before; returns (delivered, errors). Safe to call concurrently."""
    delivered: list[Alert] = []
    errors: list[str] = []
    conn = psycopg2.connect(database_url)
    try:
        ensure_ledger(conn)
        for alert in alerts:
            with conn.cursor() as cur:
                cur.execute(
                    f"insert into {OPS_SCHEMA}.alert_log (alert_key, title, channels) values (%s, %s, %s) "
                    "on conflict (alert_key) do nothing returning alert_key",
                    (alert.key, alert.title, ",".join(settings.channels) or "log"),
                )
                if cur.fetchone() is None:  # announced before
                    conn.rollback()
                    continue
            try:
                send(alert, settings)
            except DeliveryError as exc:
                conn.rollback()  # not recorded: retried at the next evaluation
                errors.append(f"{alert.key}: {exc}")
                continue
            conn.commit()
            log.info("alert: %s", alert.title)
            delivered.append(alert)
    finally:
        conn.close()
    return delivered, errors
