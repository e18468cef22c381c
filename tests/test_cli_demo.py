"""The commands a user runs, as a user runs them: `saas-metrics` in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import free_port, query
from tests.support.cli import CLI, run_cli, start_ui
from tests.support.cli import user_env as cli_env


@pytest.fixture(scope="module")
def user_env(tmp_path_factory):
    env = cli_env(tmp_path_factory.mktemp("user-home"))
    yield env
    run_cli("db", "stop", env=env)


@pytest.fixture(scope="module")
def demo(user_env):
    result = run_cli("demo", "--customers", "300", "--months", "18", "--seed", "7", env=user_env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    url = run_cli("db", "url", env=user_env).stdout.strip()
    return result, url


def test_demo_prints_a_summary_and_how_to_look_further(demo):
    result, _ = demo
    assert "Current MRR" in result.stdout
    assert "MRR methodology    chartmogul" in result.stdout  # the default (METRICS.md "Methodology")
    assert "Waterfall" in result.stdout
    # two Stripe accounts served over Stripe's protocol and the contracts file: the summary splits current MRR
    # between them, and the split adds up to the total
    (split,) = [line for line in result.stdout.splitlines() if line.startswith("  By account")]
    parts = dict(re.findall(r"(us|eu|contracts) ([\d,]+\.\d\d) \(\d+\)", split))
    assert set(parts) == {"us", "eu", "contracts"}, split
    (total,) = [line for line in result.stdout.splitlines() if line.startswith("  Current MRR")]
    amount = Decimal(total.split()[2].replace(",", ""))
    assert abs(sum(Decimal(v.replace(",", "")) for v in parts.values()) - amount) <= Decimal("0.02")
    assert 'psql "$(saas-metrics db url)"' in result.stdout
    assert "saas-metrics ui" in result.stdout


def test_demo_builds_non_empty_marts_that_add_up(demo):
    _, url = demo
    for mart in ("mrr_movements", "customer_mrr_monthly", "mrr_monthly", "mrr_by_plan", "customer_mrr_current"):
        assert query(url, f"select count(*) from marts.{mart}")[0][0] > 0, mart
    rows = query(
        url,
        "select starting_mrr, new_mrr, expansion_mrr, reactivation_mrr, contraction_mrr, "
        "churned_mrr, fx_impact, ending_mrr from marts.mrr_monthly order by month",
    )
    for start, new, exp, react, contr, churn, fx, end in rows:
        assert end == start + new + exp + react - contr - churn + fx
    assert rows[-1][-1] > Decimal(1000)
    # the demo's two accounts: 300 customers in the US one, 300 // 5 = 60 in the EU one, all billed in EUR
    assert dict(query(url, "select account, count(*) from raw_stripe.customers group by 1")) == {"us": 300, "eu": 60}
    eu = query(url, "select distinct currency from marts.customer_mrr_current where billing_account = 'eu'")
    assert eu == [("eur",)]


def test_demo_bills_contracts_outside_stripe(demo):
    # the contracts file (saas_metrics.demo.account.write_contracts_file): 20 contracts; each USD one's MRR today
    # worked out here from its version in force, as METRICS.md "Contracts outside Stripe" says
    _, url = demo
    rows = query(
        url,
        "select contract_id, customer_id, amount, quantity, discount_percent, billing_interval, interval_count,"
        " start_date, end_date from raw_finance.contracts where currency = 'usd' order by contract_id, start_date",
    )
    assert len({row[0] for row in query(url, "select contract_id from raw_finance.contracts")}) == 20
    today = query(url, "select (max(snapshot_date)) from marts.customer_mrr_monthly")[0][0]
    expected: dict[str, Decimal] = {}
    for _contract, customer, amount, quantity, discount, interval, count, start, end in rows:
        if start <= today and (end is None or end > today):
            months = {"month": Decimal(count), "year": Decimal(12 * count)}[interval]
            expected[f"contracts:{customer}"] = amount * quantity * (1 - discount / 100) / months
    current = query(
        url,
        "select customer_id, mrr_local from marts.customer_mrr_current"
        " where billing_account = 'contracts' and currency = 'usd' and mrr > 0",
    )
    assert {c: round(m, 2) for c, m in current} == {c: round(m, 2) for c, m in expected.items()}
    assert len(expected) >= 10


def test_demo_exercises_the_growth_marts(demo):
    """Annual renewals, channels with and without spend, a P&L file, metadata attributes (issue 15). Before any
    test runs `saas-metrics run` in this home: without the demo's finance files that refresh loads no spend."""
    _, url = demo
    decided, calendar = query(
        url,
        "select sum(renewals_decided), sum(mrr_up_for_renewal) filter (where is_future_period) "
        "from marts.renewals where period_type = 'month'",
    )[0]
    assert decided > 0 and calendar > 0
    industries = {
        r[0] for r in query(url, "select segment from marts.mrr_by_segment where dimension = 'metadata.industry'")
    }
    assert "(none)" in industries and len(industries) > 3
    paid, unpaid = query(
        url,
        "select count(*) filter (where spend > 0), count(*) filter (where spend = 0 and new_customers > 0) "
        "from marts.cac_by_channel",
    )[0]
    assert paid > 0 and unpaid > 0  # referral: customers without spend
    assert query(url, "select count(*) from marts.saas_efficiency where rule_of_40 is not null")[0][0] > 0
    assert query(url, "select count(*) from marts.signup_funnel")[0][0] > 0


def test_demo_run_is_recorded_in_the_dagster_instance(demo, user_env):
    _, url = demo
    dagster_url = url.rsplit("/", 1)[0] + "/dagster"
    runs = query(dagster_url, "select pipeline_name, status from runs")
    assert ("refresh_job", "SUCCESS") in runs
    materialized = {k for (k,) in query(dagster_url, "select asset_key from asset_keys")}
    assert '["stripe", "invoices"]' in materialized
    assert '["marts", "mrr_monthly"]' in materialized


UI_STATE_QUERY = """{
  workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError {
    __typename
    ... on PythonError { message }
    ... on RepositoryLocation { repositories {
      assetGroups { groupName }
      schedules { name scheduleState { status } }
      sensors { name sensorState { status } }
    } }
  } } } }
  assetNodes { assetKey { path } description assetChecksOrError { ... on AssetChecks { checks {
    name executionForLatestMaterialization { status }
  } } } }
}"""


def _ui_state(port: int, deadline: float) -> dict:
    """What the UI shows, over its GraphQL API, once the code location has loaded."""
    import json
    import time
    import urllib.request

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": UI_STATE_QUERY}).encode(),
        headers={"content-type": "application/json"},
    )
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                data = json.load(response)["data"]
            entries = data["workspaceOrError"]["locationEntries"]
            if entries and entries[0]["locationOrLoadError"]:
                return data
        except OSError:
            pass
        assert time.monotonic() < deadline, "the Dagster UI did not come up"
        time.sleep(2)


def test_ui_shows_the_demo_run_without_an_activated_virtualenv(demo, user_env):
    """`saas-metrics ui` on the demo database: the code location loads (even with the virtualenv's bin
    off PATH, where dbt lives), the groups of described assets, schedules and sensors on, checks green."""
    import signal
    import time

    venv_bin = os.path.dirname(sys.executable)
    env = dict(user_env, PATH=os.pathsep.join(p for p in user_env["PATH"].split(os.pathsep) if p != venv_bin))
    port = free_port()
    ui = start_ui(env, port)
    try:
        data = _ui_state(port, time.monotonic() + 180)
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=60)
    location = data["workspaceOrError"]["locationEntries"][0]["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location.get("message")
    (repository,) = location["repositories"]
    assert {g["groupName"] for g in repository["assetGroups"]} == {
        "ingestion",
        "staging",
        "billing",
        "mrr",
        "retention",
        "product",
        "predictions",
        "publication",
        "reports",
        "growth",
        "finance",
    }
    schedules = {s["name"]: s["scheduleState"]["status"] for s in repository["schedules"]}
    assert schedules["nightly_refresh_schedule"] == "RUNNING"
    assert {s["sensorState"]["status"] for s in repository["sensors"]} == {"RUNNING"}
    assert all(node["description"] for node in data["assetNodes"])
    checks = {
        ("/".join(node["assetKey"]["path"]), check["name"]): (check["executionForLatestMaterialization"] or {}).get(
            "status"
        )
        for node in data["assetNodes"]
        for check in (node["assetChecksOrError"] or {}).get("checks", [])
    }
    assert len(checks) > 50
    assert {key: status for key, status in checks.items() if status != "SUCCEEDED"} == {}


def test_demo_churners_show_declining_health_before_they_churn(demo):
    """The product story the demo must tell: health falls in the weeks before a customer decides to cancel.

    Measured from the decision (the subscription's `canceled_at`, Stripe's `cancellation_details.reason` =
    `cancellation_requested`), not from the MRR churn: a cancellation at period end churns up to a year after the
    decision, and dunning giving up (`payment_failed`) gives no warning in usage, as in life; how many of each
    fall in a window depends on the day the demo is generated, the decline before a decision does not. Each
    customer is compared with itself (health spreads widely between customers: a mean over all of them moved
    with the day's mix of customers, by more than the effect)."""
    _, url = demo
    rows = query(
        url,
        """
        with decisions as (
            select distinct
                data ->> 'customer' as customer_id,
                to_timestamp((data ->> 'canceled_at')::bigint)::date as decided_on
            from raw_stripe.subscriptions
            where data -> 'cancellation_details' ->> 'reason' = 'cancellation_requested'
        ),
        weeks as (
            select
                decisions.customer_id,
                decisions.decided_on,
                (decisions.decided_on - weekly.week_start) / 7 as weeks_before,
                weekly.health_score
            from decisions
            inner join marts.account_engagement_weekly as weekly
                on weekly.customer_id = decisions.customer_id
                and weekly.is_complete_week
                and weekly.week_start < decisions.decided_on - 6
            where decisions.decided_on >= (select min(first_seen_date) from marts.account_health) + 7 * 13
        ),
        per_decision as (
            select
                customer_id,
                decided_on,
                avg(health_score) filter (where weeks_before between 1 and 4) as near,
                avg(health_score) filter (where weeks_before between 9 and 12) as earlier
            from weeks
            group by customer_id, decided_on
        )
        select count(*), avg(near - earlier), avg(near)
        from per_decision
        where near is not null and earlier is not null
        """,
    )
    decisions, change, near = rows[0]
    paying = query(
        url,
        "select avg(health_score) from marts.account_health where is_paying and health_score is not null",
    )[0][0]
    assert decisions >= 12, decisions
    # on average 10+ points lower in the month before the decision than two months earlier, and than payers now
    assert change < -10, change
    assert near < paying - 10, (near, paying)
    assert query(url, "select count(*) from marts.churn_risk")[0][0] > 0
    assert query(url, "select count(*) from marts.activation where activation_rate > 0")[0][0] > 3


def test_demo_refresh_forecasts_and_scores_churn(demo):
    # the refresh ends with the prediction assets: a 12-month forecast, its backtest (18 months of
    # history: origins 12 .. 17), and either churn scores by a stored model or a skip with no rows
    _, url = demo
    assert query(url, "select count(*) from marts.mrr_forecast")[0][0] == 12
    methods = query(url, "select distinct method from marts.mrr_forecast_backtest order by 1")
    assert methods == [("last_value",), ("linear_trend",), ("model",)]
    scored = query(url, "select count(*), count(distinct model_id) from marts.churn_predictions")[0]
    models = query(url, "select count(*) from ops.churn_models")[0][0]
    assert scored[1] == (1 if models else 0)
    if models:
        paying = query(url, "select count(*) from marts.customer_mrr_current where is_paying")[0][0]
        assert scored[0] == paying


def test_psql_reads_the_marts_with_the_printed_url(demo):
    _, url = demo
    out = subprocess.run(
        ["psql", url, "-tAc", "select count(*) from marts.mrr_monthly"], capture_output=True, text=True
    )
    if out.returncode != 0 and "not found" in out.stderr:
        pytest.skip("no psql client on this machine")
    assert out.returncode == 0 and int(out.stdout.strip()) > 0


def test_the_demo_report_shows_the_marts_figures(demo, user_env):
    import json
    import re

    _, url = demo
    [(month, mrr, previous_mrr, customers, churn, ltv_to_cac)] = query(
        url,
        "select month, mrr, lag(mrr) over (order by month), paying_customers, logo_churn_rate, ltv_to_cac "
        "from marts.saas_kpis_monthly where is_complete_month order by month desc limit 1",
    )
    # the refresh rendered the last complete month
    html = (
        Path(user_env["SAAS_METRICS_HOME"]) / "reports" / f"{month:%Y-%m}" / f"saas-metrics-report-{month:%Y-%m}.html"
    )
    page = html.read_text()
    figures = json.loads(re.search(r'id="report-figures">(.*?)</script>', page).group(1))
    assert Decimal(str(figures["mrr"])) == mrr and Decimal(str(figures["mrr_change"])) == mrr - previous_mrr
    assert figures["paying_customers"] == customers
    assert Decimal(str(figures["logo_churn_rate"])) == churn
    assert ltv_to_cac is not None and Decimal(str(figures["ltv_to_cac"])) == ltv_to_cac  # the demo has spend files
    assert f'<div class="value">{mrr:,.0f}</div>' in page
    top = query(
        url,
        "select customer_id from marts.customer_mrr_monthly where month = %s order by mrr desc, customer_id limit 10",
        (month,),
    )
    # Stripe's customers and the contracts file's (`contracts:<id>`)
    customer_cells = re.search(r'id="top-customers">(.*?)</table>', page).group(1)
    assert re.findall(r"<td[^>]*>(cus_\w+|contracts:[\w-]+)</td>", customer_cells) == [c for (c,) in top]
    [(churn_risk_customers,)] = query(url, "select count(*) from marts.churn_risk")
    assert figures["churn_risk_customers"] == churn_risk_customers
    assert html.with_suffix(".pdf").read_bytes().startswith(b"%PDF-")
    # the Dagster UI shows the path and the key figures as the materialization's metadata
    dagster_url = url.rsplit("/", 1)[0] + "/dagster"
    [(event,)] = query(
        dagster_url,
        'select event from event_logs where asset_key = \'["reports", "metrics_report"]\' '
        "and dagster_event_type = 'ASSET_MATERIALIZATION' order by id desc limit 1",
    )
    assert str(html) in event and '"mrr"' in event and '"logo_churn_rate"' in event
    # on demand, for another month
    earlier = f"{month.year - (month.month == 1)}-{(month.month - 2) % 12 + 1:02d}"
    result = run_cli("report", "--month", earlier, env=user_env)
    assert result.returncode == 0, result.stderr[-2000:]
    pdf = Path(result.stdout.split("PDF:")[1].strip())
    assert pdf.parent.name == earlier and pdf.exists()
    bad = run_cli("report", "--month", "2001-01", env=user_env)
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[-1].startswith("saas-metrics: error: no data for 2001-01: marts.mrr_monthly starts")


def test_a_second_demo_reuses_the_running_database(demo, user_env):
    before = run_cli("db", "status", env=user_env).stdout
    result = run_cli("demo", "--customers", "300", "--months", "18", "--seed", "7", env=user_env)
    assert result.returncode == 0, result.stderr[-2000:]
    after = run_cli("db", "status", env=user_env).stdout
    assert before.split(",")[0] == after.split(",")[0]  # same pid


# the transaction that wrote most of the staged invoice lines, and how many it wrote
WRITTEN_BY = "select xmin::text, count(*) from staging.stg_stripe__invoice_lines group by 1 order by 2 desc limit 1"


@pytest.fixture(scope="module")
def rerun(demo, user_env):
    """`saas-metrics run` once more, without Stripe settings (two tests read it): its result, and who wrote
    the staged invoice lines before and after it."""
    _, url = demo
    before = query(url, WRITTEN_BY)
    result = run_cli("run", env=user_env)
    return result, before, query(url, WRITTEN_BY)


def test_run_without_stripe_rebuilds_from_raw(rerun):
    result, _, _ = rerun
    assert result.returncode == 0, result.stderr[-2000:]
    assert "STRIPE_API_KEY is not set: skipping the Stripe load" in result.stdout


def test_run_keeps_staged_rows_and_full_refresh_rebuilds_them(demo, user_env, rerun):
    _, url = demo
    result, before, after_rerun = rerun
    assert result.returncode == 0, result.stderr[-2000:]
    assert after_rerun == before  # nothing new loaded: no line parsed again
    result = run_cli("run", "--full-refresh", env=user_env)
    assert result.returncode == 0, result.stderr[-2000:]
    after = query(url, WRITTEN_BY)
    assert (
        after[0][0] != before[0][0] and after[0][1] == query(url, "select count(*) from raw_stripe.invoice_lines")[0][0]
    )


def test_run_through_a_stripe_outage_says_it_is_retrying(demo, user_env, tmp_path):
    """A 503 is retried, each retry announced (issue 19.5: "retrying in N s, attempt k of n"); an
    unreachable STRIPE_API_BASE ends in seconds instead (tests/test_operations.py)."""
    from saas_metrics.demo.server import StripeProtocolServer
    from saas_metrics.demo.store import Store
    from tests.support.faults import Faults

    faults = Faults()
    faults.add(503, times=3)
    with StripeProtocolServer(Store(tmp_path / "empty.sqlite"), api_key="sk_test_x", faults=faults) as server:
        env = {**user_env, "STRIPE_API_KEY": "sk_test_x", "STRIPE_API_BASE": server.url}
        result = run_cli("run", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "answered 503; retrying in " in result.stderr
    assert ", attempt 2 of 7" in result.stderr


@pytest.mark.parametrize(
    ("env_extra", "message"),
    [
        ({"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL must be a postgresql:// URL"),
        ({"SAAS_METRICS_PG_PORT": "abc"}, "SAAS_METRICS_PG_PORT must be a whole number"),
        ({"STRIPE_API_BASE": "localhost:1234"}, "STRIPE_API_BASE must start with http:// or https://"),
        (
            {"SAAS_METRICS_SMTP_HOST": "127.0.0.1"},
            "SAAS_METRICS_SMTP_HOST is set but SAAS_METRICS_ALERT_EMAIL_TO names no recipient",
        ),
        ({"SAAS_METRICS_ALERT_CHURN_MRR": "lots"}, "SAAS_METRICS_ALERT_CHURN_MRR must be a number, got 'lots'"),
    ],
)
def test_bad_configuration_is_one_clear_line(tmp_path, env_extra, message):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DATABASE_URL"))}
    env.update(SAAS_METRICS_HOME=str(tmp_path), **env_extra)
    result = run_cli("db", "status", env=env)
    assert result.returncode == 1
    assert result.stderr.strip() == f"saas-metrics: error: {message}" or message in result.stderr


def test_help_on_every_command():
    for args in ([], ["run"], ["demo"], ["db"], ["ui"]):
        result = subprocess.run([CLI, *args, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "usage: saas-metrics" in result.stdout
