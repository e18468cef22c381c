"""The report (HTML + PDF from the marts) and marts a BI tool understands (descriptions in PostgreSQL,
complete-month flags, the BI role and personal data).

The report account, "today" frozen at 2026-02-15 (January 2026 is the last complete month):
  A  Pro $1,000/month from 2025-11-05, channel ads, keeps paying
  B  Starter $100/month from 2025-11-10, channel organic; $300 from the 2026-01-10 renewal
  C  Starter $300/month from 2025-12-03, channel ads, canceled at once on 2026-01-20
  D  Pro yearly $6,000 ($500/month) from 2026-01-08, channel organic
  E  Starter $100/month from 2026-02-02 (the running month: in no January figure), channel ads
By hand:
  MRR     Nov end A 1000 + B 100 = 1,100; Dec end + C 300 = 1,400;
          Jan end A 1000 + B 300 + D 500 = 1,800 (new 500 D + expansion 200 B - churn 300 C)
          -> +400 vs December, 400 / 1400 = +28.6%                                   (green)
  active  Dec end A B C = 3, Jan end A B D = 3                                          (flat)
  churn   Jan: 1 of the 3 paying at its start (C) = 33.3%; Dec: 0 of 2 = 0.0%           (red)
  LTV:CAC no finance files: n/a
  plans   Jan end: Pro 1000 + 500 = 1,500, Starter 300
  channel Jan end: ads 1,000 (A), organic 300 + 500 = 800 (B, D)
  top     A 1000/1800 = 55.6%, D 500/1800 = 27.8% (both above 20%: the warning), B 16.7%
  cohorts 2025-11 (A B): 100% in months 0, 1, 2; 2025-12 (C): 100%, then 0%; 2026-01 (D): 100%
  risk    no product events: every customer paying today is flagged - A 1000, D 500, B 300, E 100
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal

import psycopg2
import pytest

from saas_metrics.analytics import report
from saas_metrics.demo.billing import Account, Item
from saas_metrics.demo.store import Store
from tests.conftest import query
from tests.support.clock import ts
from tests.support.pipeline import dbt_build, scenario_warehouse

NOW = ts("2026-02-15")
T0 = ts("2025-10-01")
JANUARY = dt.date(2026, 1, 1)


def build(store: Store) -> None:
    a = Account(store, NOW, id_prefix="R")
    pro = a.product("Pro", T0, id="prod_pro")
    starter = a.product("Starter", T0, id="prod_starter")
    pro_monthly = a.price(pro, 100000, T0, id="price_pro_monthly")
    pro_yearly = a.price(pro, 600000, T0, interval="year", id="price_pro_yearly")
    starter_100 = a.price(starter, 10000, T0, id="price_starter_100")
    starter_300 = a.price(starter, 30000, T0, id="price_starter_300")

    def customer(name, when, channel):
        return a.customer(
            ts(when), id=f"cus_{name}", email=f"{name.lower()}@example.com", metadata={"channel": channel}
        )

    a.subscribe(customer("A", "2025-11-05", "ads"), [Item(pro_monthly)], ts("2025-11-05")).finish()
    b = a.subscribe(customer("B", "2025-11-10", "organic"), [Item(starter_100)], ts("2025-11-10"))
    b.change_at_renewal(ts("2025-12-20"), [Item(starter_300, id=b.items[0].id)])
    b.finish()
    c = a.subscribe(customer("C", "2025-12-03", "ads"), [Item(starter_300)], ts("2025-12-03"))
    c.cancel(ts("2026-01-20"))
    c.finish()
    a.subscribe(customer("D", "2026-01-08", "organic"), [Item(pro_yearly)], ts("2026-01-08")).finish()
    a.subscribe(customer("E", "2026-02-02", "ads"), [Item(starter_100)], ts("2026-02-02")).finish()
    a.flush()


@pytest.fixture(scope="module")
def warehouse(fresh_database, tmp_path_factory, pg):
    return scenario_warehouse("report", build, NOW, fresh_database, tmp_path_factory)


@pytest.fixture(scope="module")
def rendered(warehouse, tmp_path_factory):
    url, _ = warehouse
    home = tmp_path_factory.mktemp("report-home")
    with psycopg2.connect(url) as conn:
        files = report.write_report(conn, home)
    return files, home


def test_report_month_cards_worked_out_by_hand(rendered):
    files, _ = rendered
    assert files.month == JANUARY
    f = files.figures
    assert f["month"] == "2026-01"
    assert (f["mrr"], f["previous_mrr"], f["mrr_change"]) == (1800, 1400, 400)
    assert round(f["mrr_growth_rate"], 4) == 0.2857
    assert (f["paying_customers"], f["previous_paying_customers"]) == (3, 3)
    assert (round(f["logo_churn_rate"], 4), f["previous_logo_churn_rate"]) == (0.3333, 0)
    assert f["ltv_to_cac"] is None
    assert round(f["top_customer_share"], 4) == 0.5556
    assert f["concentration_risks"] == ["cus_A", "cus_D"]
    assert (f["churn_risk_customers"], f["churn_risk_mrr"]) == (4, 1900)


def test_html_is_self_contained_and_shows_the_figures(rendered):
    files, home = rendered
    assert files.html == home / "reports" / "2026-01" / "saas-metrics-report-2026-01.html"
    page = files.html.read_text()
    # opens offline: no script or stylesheet or image fetched from anywhere
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script src" not in page and "@import" not in page
    assert page.count("<svg") == 3  # MRR chart, cohort heatmap, breakdown (matplotlib, inline)
    assert json.loads(re.search(r'id="report-figures">(.*?)</script>', page).group(1)) == files.figures
    cards = dict(re.findall(r'<div class="card (\w+)" data-metric="(\w+)"', page)[i][::-1] for i in range(4))
    assert cards == {"mrr": "good", "paying_customers": "flat", "logo_churn_rate": "bad", "ltv_to_cac": "na"}
    assert '<div class="value">1,800</div>' in page and "+400 (+28.6%) vs Dec" in page
    assert '<div class="value">33.3%</div>' in page and "from 0.0% in Dec" in page
    assert "Concentration risk: cus_A (55.6%), cus_D (27.8%) of MRR" in page
    waterfall = re.search(r'<table id="waterfall">(.*?)</table>', page).group(1)
    first_row = re.findall(r"<td[^>]*>([^<]*)</td>", waterfall)[:10]
    assert first_row == ["2026-01", "1,400", "500", "200", "0", "0", "-300", "0", "1,800", "3"]
    assert "2026-02" not in waterfall  # the running month is not in a monthly report
    top = re.findall(r"<td[^>]*>(cus_\w+)</td><td[^>]*>([\d,.]+)</td><td[^>]*>([\d.]+%)</td>", page)
    assert top == [("cus_A", "1,000.00", "55.6%"), ("cus_D", "500.00", "27.8%"), ("cus_B", "300.00", "16.7%")]
    risk = re.search(r'<table id="churn-risk">(.*?)</table>', page).group(1)
    assert re.findall(r"<td[^>]*>(cus_\w+)</td>", risk) == ["cus_A", "cus_D", "cus_B", "cus_E"]
    assert "@example.com" not in page  # no personal data in a file that gets mailed around


def test_breakdowns_and_cohorts_worked_out_by_hand(warehouse):
    url, _ = warehouse
    with psycopg2.connect(url) as conn:
        data = report.load(conn)
    assert data.plans == [("Pro", Decimal("1500.0000")), ("Starter", Decimal("300.0000"))]
    assert data.segments == [("ads", Decimal("1000.0000")), ("organic", Decimal("800.0000"))]
    retention = {
        (r["cohort_month"].strftime("%Y-%m"), r["months_since_start"]): r["logo_retention"] for r in data.cohorts
    }
    assert retention == {
        ("2025-11", 0): 1,
        ("2025-11", 1): 1,
        ("2025-11", 2): 1,
        ("2025-12", 0): 1,
        ("2025-12", 1): 0,
        ("2026-01", 0): 1,
    }
    assert [row["month"].strftime("%Y-%m") for row in data.history] == ["2025-11", "2025-12", "2026-01"]


def test_pdf_has_the_same_content_on_four_pages(rendered):
    files, _ = rendered
    content = files.pdf.read_bytes()
    assert content.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page\b", content)) == 4


def test_an_earlier_month_and_the_running_month(warehouse, tmp_path):
    url, _ = warehouse
    with psycopg2.connect(url) as conn:
        december = report.write_report(conn, tmp_path, dt.date(2025, 12, 1))
        assert (december.figures["mrr"], december.figures["previous_mrr"]) == (1400, 1100)
        assert december.html.parent.name == "2025-12"
        first = report.write_report(conn, tmp_path, dt.date(2025, 11, 1))  # no month before it
        assert (first.figures["mrr"], first.figures["previous_mrr"], first.figures["mrr_change"]) == (1100, None, None)
        assert 'data-metric="mrr" data-value="1100.0000"' in first.html.read_text()
        with pytest.raises(report.ReportError, match="2026-02 is not complete yet: the last complete month is 2026-01"):
            report.load(conn, dt.date(2026, 2, 1))
        with pytest.raises(report.ReportError, match="no data for 2020-01: marts.mrr_monthly starts at 2025-11"):
            report.load(conn, dt.date(2020, 1, 1))
    with pytest.raises(report.ReportError, match="--month must look like 2026-01"):
        report.parse_month("January")


def test_no_marts_yet_is_one_clear_line(fresh_database):
    with psycopg2.connect(fresh_database("empty")) as conn:
        with pytest.raises(report.ReportError, match="the marts are not built yet .*: run the refresh first"):
            report.load(conn)


def test_card_lines_for_the_weekly_summary(rendered):
    files, _ = rendered
    assert files.cards[0] == "January 2026, the last complete month (USD):"
    assert files.cards[1] == "  MRR: 1,800, +400 (+28.6%) vs December - better"
    assert files.cards[2] == "  Active customers: 3, +0 vs December - same"
    assert files.cards[3] == "  Monthly churn: 33.3%, from 0.0% in December - worse"
    assert files.cards[-1] == "  Warning: concentration risk - cus_A 55.6%, cus_D 27.8% of MRR"


# -- marts a BI tool understands --------------------------------------------------------------------------
def test_descriptions_are_persisted_to_postgresql(warehouse):
    url, _ = warehouse
    table, column = query(
        url,
        "select obj_description('marts.mrr_monthly'::regclass, 'pg_class'), "
        "col_description('marts.mrr_monthly'::regclass, "
        "(select attnum from pg_attribute where attrelid = 'marts.mrr_monthly'::regclass and attname = 'ending_mrr'))",
    )[0]
    assert table.startswith("The monthly MRR waterfall.")
    assert column.startswith("Sum of customers' MRR at the month's end")
    # a view too
    assert query(url, "select obj_description('marts.customer_mrr_current'::regclass, 'pg_class')")[0][0].startswith(
        "Every customer that ever paid"
    )


def test_every_monthly_mart_says_whether_its_month_is_complete(warehouse):
    url, _ = warehouse
    # today 2026-02-15: February is running, January and before are complete
    assert query(
        url, "select month, is_complete_month from marts.mrr_monthly where month >= '2026-01-01' order by 1"
    ) == [
        (dt.date(2026, 1, 1), True),
        (dt.date(2026, 2, 1), False),
    ]
    assert query(
        url,
        "select distinct month, is_complete_month from marts.cohort_retention where month >= '2026-01-01' order by 1",
    ) == [(dt.date(2026, 1, 1), True), (dt.date(2026, 2, 1), False)]
    for mart in ("mrr_by_plan", "customer_mrr_monthly"):
        assert query(
            url, f"select distinct month, is_complete_month from marts.{mart} where month >= '2026-01-01' order by 1"
        ) == [(dt.date(2026, 1, 1), True), (dt.date(2026, 2, 1), False)]
    # no usage prices in this account: the column is there, typed
    assert query(
        url,
        "select data_type from information_schema.columns "
        "where table_schema = 'marts' and table_name = 'usage_revenue_monthly' and column_name = 'is_complete_month'",
    ) == [("boolean",)]


def _can_read(url: str, sql: str) -> bool:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        try:
            cur.execute(sql)
            return True
        except psycopg2.errors.InsufficientPrivilege:
            return False


def test_bi_role_keeps_personal_data_out_unless_opted_in(warehouse):
    from saas_metrics.warehouse import create_bi_role, personal_columns

    url, work = warehouse
    personal = personal_columns(work / "dbt_target" / "manifest.json")
    assert {mart: columns for mart, (_, columns) in personal.items()} == {
        "customer_mrr_current": ["email"],
        "revenue_concentration": ["email"],
    }
    role = create_bi_role(url, "report_bi", personal=personal)
    assert role.password_set

    def reads_no_personal_data(bi_url: str) -> None:
        assert _can_read(bi_url, "select customer_id, mrr from marts.customer_mrr_current")
        assert _can_read(bi_url, "select customer_id, share_of_mrr from marts.revenue_concentration")
        assert _can_read(bi_url, "select * from marts.mrr_monthly")
        assert not _can_read(bi_url, "select email from marts.customer_mrr_current")
        assert not _can_read(bi_url, "select * from marts.revenue_concentration")

    reads_no_personal_data(role.url)
    # no temporary tables either (PostgreSQL gives TEMP to PUBLIC by default)
    assert query(url, "select has_database_privilege('report_bi', current_database(), 'TEMP')") == [(False,)]
    assert not _can_read(role.url, "create temporary table scratch (x int)")
    # dbt rebuilds the relations: its post-hook keeps the columns out of the new ones
    dbt_build(url, work, NOW, select="customer_mrr_current revenue_concentration")
    reads_no_personal_data(role.url)

    # run again: the password (and the BI tool's saved connection) stays
    again = create_bi_role(url, "report_bi", personal=personal)
    assert not again.password_set and ":" not in again.url.split("@")[0].removeprefix("postgresql://")
    reads_no_personal_data(role.url)

    # opting in, surviving a rebuild; and out again
    create_bi_role(url, "report_bi", personal=personal, include_personal_data=True)
    assert _can_read(role.url, "select email from marts.customer_mrr_current")
    dbt_build(url, work, NOW, select="customer_mrr_current revenue_concentration")
    assert _can_read(role.url, "select email from marts.customer_mrr_current")
    assert _can_read(role.url, "select * from marts.revenue_concentration")
    create_bi_role(url, "report_bi", personal=personal)
    reads_no_personal_data(role.url)

    # a new password only when asked
    rotated = create_bi_role(url, "report_bi", personal=personal, rotate_password=True)
    assert rotated.password_set and rotated.url != role.url
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(role.url).close()
    reads_no_personal_data(rotated.url)


def test_weekly_summary_email_carries_the_cards_and_the_report(warehouse, monkeypatch, tmp_path):
    import email
    from email import policy

    import dagster as dg
    from aiosmtpd.controller import Controller

    from saas_metrics import runtime
    from tests.conftest import free_port

    url, _ = warehouse
    received = []

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            received.append(email.message_from_bytes(envelope.content, policy=policy.default))
            return "250 OK"

    smtp = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("SAAS_METRICS_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("SAAS_METRICS_SMTP_PORT", str(smtp.port))
        monkeypatch.setenv("SAAS_METRICS_ALERT_EMAIL_TO", "founders@example.com")
        runtime.settings.cache_clear()
        from orchestration.definitions import defs

        with dg.DagsterInstance.ephemeral() as instance:
            result = defs.resolve_job_def("weekly_summary_job").execute_in_process(instance=instance)
        assert result.success
    finally:
        smtp.stop()
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("delete from ops.alert_log where alert_key like 'weekly_summary:%'")
    [message] = received
    body = message.get_body(("plain",)).get_content()
    assert "January 2026, the last complete month (USD):" in body
    assert "  MRR: 1,800, +400 (+28.6%) vs December - better" in body
    attached = {part.get_filename(): part for part in message.iter_attachments()}
    assert sorted(attached) == ["saas-metrics-report-2026-01.html", "saas-metrics-report-2026-01.pdf"]
    assert attached["saas-metrics-report-2026-01.pdf"].get_content().startswith(b"%PDF-")
    assert (tmp_path / "home" / "reports" / "2026-01" / "saas-metrics-report-2026-01.html").exists()
