"""Orchestration: the refresh job in-process with its checks, and alerts delivered once.

Alerts are delivered for real: to a local HTTP receiver (the Slack-compatible webhook) and to a
local SMTP server (aiosmtpd). The alert account, "today" frozen at 2026-02-15, threshold $200:
  STAY     $1,000/month from 2025-01-05, keeps paying
  BIG      $500/month from 2025-01-10, canceled at once on 2026-02-12    -> churn alert (3 days ago)
  SMALL    $100/month from 2025-01-05, canceled at once on 2026-02-13    -> under the threshold
  OLD      $300/month from 2025-01-05, canceled at once on 2026-01-20    -> older than 7 days
  LEAVING  $250/month from 2025-03-01, cancel at period end asked 2026-02-10 (ends 2026-03-01)
                                                                          -> scheduled cancellation
  DOWN     $400/month from 2025-01-05, $200 from the 2026-01-05 renewal
By hand, January 2026 (the last complete month):
  paying at its start: STAY BIG SMALL OLD LEAVING DOWN = 6; churned in it: OLD -> logo churn 1/6 = 16.7%
  MRR of those 6 at Dec end 1000+500+100+300+250+400 = 2550, at Jan end 1000+500+100+0+250+200 = 2050
  -> NRR 2050/2550 = 80.4%
  MRR today: STAY 1000 + LEAVING 250 + DOWN 200 = 1450 -> the $1,000 milestone
Weekly summary for (2026-02-08, 2026-02-15]: BIG -500 and SMALL -100 -> -600; 0 new, 2 churned.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from aiosmtpd.controller import Controller

from saas_metrics import runtime
from saas_metrics.analytics import alerts
from saas_metrics.config import AlertSettings
from saas_metrics.demo.account import generate
from saas_metrics.demo.billing import Account, Item
from saas_metrics.demo.server import StripeProtocolServer
from saas_metrics.demo.store import Store
from tests.conftest import free_port, query
from tests.support.clock import ts
from tests.support.pipeline import API_KEY, scenario_warehouse

NOW = ts("2026-02-15")
TODAY = dt.date(2026, 2, 15)
T0 = ts("2024-12-01")


# -- local receivers --------------------------------------------------------------------------------
class WebhookReceiver:
    """A Slack-compatible incoming webhook on 127.0.0.1 that records what it is sent."""

    def __init__(self):
        self.messages: list[dict] = []
        self.fail = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.fail:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.messages.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


class MailSink:
    def __init__(self):
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def receivers():
    webhook = WebhookReceiver()
    sink = MailSink()
    smtp = Controller(sink, hostname="127.0.0.1", port=free_port())
    smtp.start()
    settings = AlertSettings(
        webhook_url=webhook.url,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,
        email_to=("founders@example.com",),
        email_from="alerts@example.com",
    )
    yield webhook, sink, settings
    smtp.stop()
    webhook.close()


# -- the alert account -------------------------------------------------------------------------------
def build(store: Store) -> None:
    a = Account(store, NOW, id_prefix="A")
    product = a.product("Pro", T0, id="prod_pro")
    prices = {v: a.price(product, v * 100, T0, id=f"price_a{v}") for v in (1000, 500, 400, 300, 250, 200, 100)}

    def subscribe(name, when, dollars):
        return a.subscribe(
            a.customer(ts(when), id=f"cus_{name}", email=f"{name.lower()}@example.com"),
            [Item(prices[dollars])],
            ts(when),
        )

    subscribe("STAY", "2025-01-05", 1000).finish()
    for name, start, dollars, canceled in (
        ("BIG", "2025-01-10", 500, "2026-02-12"),
        ("SMALL", "2025-01-05", 100, "2026-02-13"),
        ("OLD", "2025-01-05", 300, "2026-01-20"),
    ):
        sub = subscribe(name, start, dollars)
        sub.cancel(ts(canceled))
        sub.finish()
    leaving = subscribe("LEAVING", "2025-03-01", 250)
    leaving.cancel(ts("2026-02-10"), at_period_end=True)
    leaving.finish()
    down = subscribe("DOWN", "2025-01-05", 400)
    down.change_at_renewal(ts("2025-12-20"), [Item(prices[200], id=down.items[0].id)])
    down.finish()
    a.flush()


@pytest.fixture(scope="module")
def alert_warehouse(fresh_database, tmp_path_factory, pg):
    url, _ = scenario_warehouse("alerts", build, NOW, fresh_database, tmp_path_factory)
    return url


def _revenue_alerts(url: str, settings: AlertSettings) -> list[alerts.Alert]:
    with psycopg2.connect(url) as conn:
        return alerts.revenue_alerts(conn, settings, today=TODAY)


def test_revenue_alerts_worked_out_by_hand(alert_warehouse):
    found = {a.key: a for a in _revenue_alerts(alert_warehouse, AlertSettings())}
    assert sorted(found) == [
        "churn:cus_BIG:2026-02-12",
        "logo_churn:2026-01",
        "milestone:1000",
        "nrr:2026-01",
        "scheduled_cancellation:cus_LEAVING:2026-03-01",
    ]
    assert found["churn:cus_BIG:2026-02-12"].message() == (
        "Churn: cus_BIG (big@example.com) left on 2026-02-12\nMRR lost: 500.00"
    )
    assert found["scheduled_cancellation:cus_LEAVING:2026-03-01"].text == "MRR 250.00, of which 250.00 is set to churn"
    assert found["logo_churn:2026-01"].title == "Logo churn 16.7% in January 2026"
    assert found["nrr:2026-01"].title == "Net revenue retention 80.4% in January 2026"
    assert found["milestone:1000"].message() == "MRR milestone: 1,000.00 crossed\nMRR is 1,450.00"


def test_thresholds_are_configurable(alert_warehouse):
    # at $50, SMALL's churn alerts too; at 20% logo churn and 80% NRR, January alerts nothing
    settings = AlertSettings(churn_mrr_threshold=50, logo_churn_threshold=0.2, nrr_threshold=0.8)
    keys = sorted(a.key for a in _revenue_alerts(alert_warehouse, settings))
    assert keys == [
        "churn:cus_BIG:2026-02-12",
        "churn:cus_SMALL:2026-02-13",
        "milestone:1000",
        "scheduled_cancellation:cus_LEAVING:2026-03-01",
    ]


def test_each_alert_is_delivered_once_to_webhook_and_email(alert_warehouse, receivers):
    webhook, sink, settings = receivers
    found = _revenue_alerts(alert_warehouse, settings)
    delivered, errors = alerts.deliver(alert_warehouse, found, settings)
    assert errors == [] and len(delivered) == 5
    assert len(webhook.messages) == 5 and len(sink.messages) == 5
    assert webhook.messages[0] == {"text": found[0].message()}
    subjects = sorted(e.content.decode().split("Subject: ")[1].split("\n")[0].strip() for e in sink.messages)
    assert "[saas-metrics] Churn: cus_BIG (big@example.com) left on 2026-02-12" in subjects
    assert all(e.rcpt_tos == ["founders@example.com"] for e in sink.messages)
    # a rerun (the next nightly refresh, a retried run) announces nothing again
    delivered, errors = alerts.deliver(alert_warehouse, _revenue_alerts(alert_warehouse, settings), settings)
    assert delivered == [] and errors == []
    assert len(webhook.messages) == 5 and len(sink.messages) == 5
    logged = query(alert_warehouse, "select count(*), min(channels) from ops.alert_log")
    assert logged == [(5, "webhook,email")]
    with psycopg2.connect(alert_warehouse) as conn, conn.cursor() as cur:
        cur.execute("truncate ops.alert_log")


def test_a_failed_delivery_is_retried_not_lost(alert_warehouse, receivers):
    webhook, sink, settings = receivers
    found = [a for a in _revenue_alerts(alert_warehouse, settings) if a.key.startswith("churn:")]
    webhook.fail = True
    delivered, errors = alerts.deliver(alert_warehouse, found, settings)
    assert delivered == [] and len(errors) == 1 and "webhook" in errors[0] and "500" in errors[0]
    assert query(alert_warehouse, "select count(*) from ops.alert_log")[0][0] == 0
    webhook.fail = False
    delivered, errors = alerts.deliver(alert_warehouse, found, settings)
    assert [a.key for a in delivered] == ["churn:cus_BIG:2026-02-12"] and errors == []
    assert len(webhook.messages) == 1
    with psycopg2.connect(alert_warehouse) as conn, conn.cursor() as cur:
        cur.execute("truncate ops.alert_log")


def test_weekly_summary_worked_out_by_hand(alert_warehouse):
    with psycopg2.connect(alert_warehouse) as conn:
        summary = alerts.weekly_summary(conn, today=TODAY)
    assert summary.key == "weekly_summary:2026-W07"
    lines = summary.text.splitlines()
    assert lines[0] == "MRR 1,450.00 (-600.00 in 7 days)"
    assert lines[1] == "New customers: 0, churned: 2, reactivated: 0"
    assert lines[3].split() == ["2026-02-12", "cus_BIG", "churn", "-500.00"]
    assert lines[4].split() == ["2026-02-13", "cus_SMALL", "churn", "-100.00"]


# -- the refresh job, in-process -------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    work = tmp_path_factory.mktemp("orchestration-demo")
    now = int(time.time())
    store = Store(work / "stripe.sqlite")
    generate(store, customers=150, months=14, seed=3, now=now, progress_every=10**9, events_dir=work / "events")
    return store, now


def _configure(monkeypatch, tmp_path, url: str, api_base: str, api_key: str, webhook: str) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("STRIPE_API_KEY", api_key)
    monkeypatch.setenv("STRIPE_API_BASE", api_base)
    monkeypatch.setenv("STRIPE_MAX_RPS", "2000")
    monkeypatch.setenv("SAAS_METRICS_ALERT_WEBHOOK_URL", webhook)
    monkeypatch.setenv("SAAS_METRICS_HOME", str(tmp_path / "home"))
    runtime.settings.cache_clear()
    runtime.prepare_environment()


def _run(job_name: str, instance: dg.DagsterInstance):
    from orchestration.definitions import defs

    return defs.resolve_job_def(job_name).execute_in_process(instance=instance, raise_on_error=False)


def test_refresh_job_runs_every_check_and_alerts_once(demo_store, fresh_database, receivers, monkeypatch, tmp_path):
    from orchestration.defs.sensors import revenue_alerts_sensor

    store, now = demo_store
    webhook, _, _ = receivers
    url = fresh_database("orchestration")
    with StripeProtocolServer(store, api_key=API_KEY, now=now) as server:
        monkeypatch.setenv("SAAS_METRICS_EVENTS_DIR", str(Path(store.path).parent / "events"))
        _configure(monkeypatch, tmp_path, url, server.url, API_KEY, webhook.url)
        with dg.DagsterInstance.ephemeral() as instance:
            result = _run("refresh_job", instance)
            assert result.success
            checks = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
            # every dbt test, and the Python checks, ran and passed
            for key in [
                ("mrr_monthly", "assert_mrr_waterfall_balances"),
                ("mrr_movements", "assert_mrr_movements_chain"),
                ("mrr_monthly", "stripe_reconciliation"),
                ("mrr_monthly", "marts_not_older_than_raw"),
                ("invoices", "raw_stripe_fresh"),
                ("invoices", "invoices_volume"),
                ("events", "events_volume"),
                ("account_health", "product_accounts_mapped"),
            ]:
                assert key in checks, key
                assert checks[key].passed, (key, checks[key].metadata)
            from orchestration.definitions import defs

            every_check = {
                (k.asset_key.path[-1], k.name) for k in defs.get_repository_def().asset_graph.asset_check_keys
            }
            assert set(checks) == every_check
            assert all(e.passed for e in checks.values() if e.severity == dg.AssetCheckSeverity.ERROR)
            reconciliation = {k: v.value for k, v in checks[("mrr_monthly", "stripe_reconciliation")].metadata.items()}
            assert reconciliation["engine_mrr"] > 1000
            assert reconciliation["unexplained_gap"] == 0, reconciliation
            marts = query(url, "select sum(mrr) from marts.customer_mrr_current where is_paying")[0][0]
            assert marts > 0
            # product events went through the product asset into the engagement marts
            mapped = {k: v.value for k, v in checks[("account_health", "product_accounts_mapped")].metadata.items()}
            assert mapped["accounts"] > 100 and mapped["unmapped_accounts"] == 0
            assert query(url, "select count(*) from marts.account_health where health_score is not null")[0][0] > 50

            # the sensor after the successful run: every alert once, none again on a second evaluation
            run = instance.get_run_by_id(result.run_id)
            success = next(e for e in result.all_events if e.event_type_value == "PIPELINE_SUCCESS")
            context = dg.build_run_status_sensor_context(
                sensor_name="revenue_alerts_sensor", dagster_event=success, dagster_instance=instance, dagster_run=run
            )
            revenue_alerts_sensor(context)
            sent = len(webhook.messages)
            expected = query(url, "select count(*) from ops.alert_log")[0][0]
            assert sent == expected >= 1  # the demo has crossed at least one MRR milestone
            assert any(m["text"].startswith("MRR milestone") for m in webhook.messages)
            revenue_alerts_sensor(context)
            assert len(webhook.messages) == sent


def test_a_failed_run_alerts_once(demo_store, fresh_database, receivers, monkeypatch, tmp_path):
    from orchestration.defs.sensors import run_failure_alert_sensor

    store, now = demo_store
    webhook, _, _ = receivers
    url = fresh_database("orchestration_fail")
    with StripeProtocolServer(store, api_key="sk_test_the_real_one", now=now) as server:
        _configure(monkeypatch, tmp_path, url, server.url, "sk_test_revoked", webhook.url)
        with dg.DagsterInstance.ephemeral() as instance:
            result = _run("refresh_job", instance)
            assert not result.success
            # a bad key is not retried: it will not get better
            assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
            # dbt did not build on a failed load: the marts keep their last state (here: none)
            assert query(url, "select count(*) from information_schema.schemata where schema_name = 'marts'") == [(0,)]
            run = instance.get_run_by_id(result.run_id)
            failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
            context = dg.build_run_status_sensor_context(
                sensor_name="run_failure_alert_sensor",
                dagster_event=failure,
                dagster_instance=instance,
                dagster_run=run,
            ).for_run_failure()
            run_failure_alert_sensor(context)
            run_failure_alert_sensor(context)
    assert len(webhook.messages) == 1
    text = webhook.messages[0]["text"]
    assert text.startswith(f"Run of refresh_job failed ({result.run_id[:8]})")


def test_only_the_newest_dbt_invocation_folders_are_kept(tmp_path):
    import os

    from orchestration.defs.dbt import prune_invocation_targets

    for n in range(13):
        folder = tmp_path / f"dbt_models-{n:07x}-abc"
        folder.mkdir()
        (folder / "manifest.json").write_text("{}")
        os.utime(folder, (1_700_000_000 + n, 1_700_000_000 + n))
    (tmp_path / "manifest.json").write_text("{}")  # the project's own parse output stays
    removed = prune_invocation_targets(tmp_path, keep=10)
    assert sorted(f.name for f in removed) == [f"dbt_models-{n:07x}-abc" for n in range(3)]
    assert sorted(f.name for f in tmp_path.iterdir()) == [f"dbt_models-{n:07x}-abc" for n in range(3, 13)] + [
        "manifest.json"
    ]
