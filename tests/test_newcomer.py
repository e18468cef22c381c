"""What a newcomer and an operator hit (issue 30, part 2): a warehouse stopped in the middle of a build, warning
checks that fired, `db url` for a stopped server, the Dagster UI's first screen."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from orchestration.cli import STOPPED_NOTE
from tests.support.cli import CLI, run_cli, user_env

DBT_BUILDING = re.compile(r"^\d+ of \d+ START ", re.MULTILINE)  # dbt's line for a node it starts
STORAGE_RETRY = "Retrying failed database connection"  # Dagster's storage, its database gone
STORAGE_WRITE_FAILED = "Exception while writing logger call to event log"


# -- 1. PostgreSQL stopped in the middle of a build -------------------------------------------------------
def test_postgres_stopped_during_a_build_is_one_line_naming_database_url(tmp_path):
    """It printed 200-470 lines of storage retries and ended with `InterfaceError: connection already closed`;
    now Dagster's storage complaints are left to --verbose and the run ends with one line naming DATABASE_URL."""
    env = {**user_env(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    assert run_cli("db", "start", env=env, timeout=120).returncode == 0
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen([CLI, "run"], env=env, stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not DBT_BUILDING.search(out.read_text(errors="replace")):
            assert process.poll() is None, err.read_text()[-3000:]
            assert time.monotonic() < deadline, "dbt did not start"
            time.sleep(0.2)
        assert run_cli("db", "stop", env=env, timeout=120).stdout.strip() == "stopped"
        code = process.wait(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    output = out.read_text(errors="replace") + err.read_text(errors="replace")
    assert code == 1, output[-3000:]
    last = err.read_text().strip().splitlines()[-1]
    assert last.startswith("saas-metrics: error: DATABASE_URL is unset: the embedded PostgreSQL at 127.0.0.1:"), last
    assert "stopped accepting connections during the refresh" in last and "saas-metrics db start" in last, last
    for said in ("InterfaceError", "Traceback", STORAGE_RETRY, STORAGE_WRITE_FAILED, "sqlalche.me"):
        assert said not in output, (said, output[-3000:])


# -- 2. warning checks that fired are in the summary ----------------------------------------------------------
def test_the_summary_lists_each_check_that_did_not_pass():
    """A run whose warning checks fire (a currency without a rate, an unexplained reconciliation gap) still
    finishes: the summary names each fired check, its asset and what it found, one line each."""
    import dagster as dg

    from orchestration.cli import _with_checks, check_lines, fired_checks

    @dg.asset(key=["marts", "mrr_monthly"])
    def mrr_monthly():
        return 1

    @dg.asset_check(asset=mrr_monthly, name="fx_rates_cover_every_currency")
    def fx_rates():
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "currencies_without_rate": "chf",
                "missing_rate_chf": "1 customers (1 paying, MRR 80.00 CHF today) left out of the USD totals: cus_chf.",
            },
        )

    @dg.asset_check(asset=mrr_monthly, name="stripe_reconciliation")
    def reconciliation():
        return dg.AssetCheckResult(
            passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={"unexplained_gap": 12.5, "month": "2025-11"}
        )

    @dg.asset_check(asset=mrr_monthly, name="product_accounts_mapped")
    def passes():
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN)

    result = dg.materialize([mrr_monthly, fx_rates, reconciliation, passes])
    assert result.success
    fired = fired_checks(result)
    assert sorted(evaluation.check_name for evaluation in fired) == [
        "fx_rates_cover_every_currency",
        "stripe_reconciliation",
    ]
    assert check_lines(fired) == [
        "  warning fx_rates_cover_every_currency on marts/mrr_monthly: currencies_without_rate chf; "
        "missing_rate_chf 1 customers (1 paying, MRR 80.00 CHF today) left out of the USD totals: cus_chf.",
        "  warning stripe_reconciliation on marts/mrr_monthly: unexplained_gap 12.5; month 2025-11",
    ]
    assert _with_checks(fired) == ", with 2 checks that did not pass (below)."
    assert _with_checks(fired_checks(dg.materialize([mrr_monthly, passes]))) == "."


# -- 3. `db url` of a stopped server; what the README asks for --------------------------------------------
def test_db_url_of_a_stopped_server_says_so_on_stderr(tmp_path):
    env = user_env(tmp_path / "home")
    stopped = run_cli("db", "url", env=env, timeout=120)
    assert stopped.returncode == 0
    assert re.fullmatch(r"postgresql://saas_metrics:[^@\s]+@127\.0\.0\.1:\d+/saas_metrics\n", stopped.stdout)
    assert stopped.stderr.strip() == STOPPED_NOTE
    assert "saas-metrics db start" in STOPPED_NOTE
    try:
        assert run_cli("db", "start", env=env, timeout=120).returncode == 0
        running = run_cli("db", "url", env=env, timeout=120)
        assert (running.stdout, running.stderr) == (stopped.stdout, "")
    finally:
        run_cli("db", "stop", env=env, timeout=120)


def test_the_summary_names_a_psql_that_exists_and_the_activate_script(monkeypatch, tmp_path):
    """Without psql on PATH (no postgresql-client), the summary's psql is the one pgserver ships; without the
    virtualenv on PATH, it says to activate it first."""
    from orchestration.cli import _look_further_tools
    from saas_metrics.postgres import find_psql

    monkeypatch.setenv("PATH", str(tmp_path))  # neither psql nor saas-metrics on it
    psql, activate = _look_further_tools()
    assert psql == str(find_psql()) and psql.endswith("pgserver/pginstall/bin/psql")
    version = subprocess.run([psql, "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("psql (PostgreSQL)")
    assert activate == str(Path(sys.executable).parent / "activate")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert _look_further_tools()[1] is None


def test_readme_says_where_the_home_is_and_how_to_get_psql():
    from saas_metrics.config import DEFAULT_HOME, IS_CHECKOUT, PROJECT_DIR

    readme = (PROJECT_DIR / "README.md").read_text()
    assert IS_CHECKOUT and DEFAULT_HOME == PROJECT_DIR / ".saas-metrics"
    (row,) = [line for line in readme.splitlines() if line.startswith("| `SAAS_METRICS_HOME` |")]
    assert "`<checkout>/.saas-metrics`" in row and "whatever the current directory" in row
    assert "postgresql-client" in readme and "pgserver/pginstall/bin/psql" in readme
    assert ". .venv/bin/activate" in readme


# -- 4. the Dagster UI's first screen ---------------------------------------------------------------------------
def test_the_ui_opens_without_the_nux_pop_up_or_a_dagster_yaml_warning(tmp_path):
    """`saas-metrics ui` opened behind Dagster's sign-up pop-up (nux) and warned that the checkout's dagster.yaml
    would not be used (it is: DAGSTER_HOME links to it) and that `dagster dev` is superseded."""
    import json
    import urllib.request

    import yaml

    from saas_metrics.config import PROJECT_DIR
    from tests.conftest import free_port

    assert yaml.safe_load((PROJECT_DIR / "dagster.yaml").read_text())["nux"] == {"enabled": False}
    env = user_env(tmp_path / "home")
    port = free_port()
    log = tmp_path / "ui.log"
    with open(log, "w") as output:
        ui = subprocess.Popen(
            [CLI, "ui", "--port", str(port)], env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    query = json.dumps({"query": "{ shouldShowNux }"}).encode()
    try:
        deadline = time.monotonic() + 180
        while True:
            assert ui.poll() is None, log.read_text()[-3000:]
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/graphql", data=query, headers={"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    answer = json.load(response)
                break
            except OSError:
                assert time.monotonic() < deadline, "the UI did not answer: " + log.read_text()[-3000:]
                time.sleep(0.5)
        assert answer == {"data": {"shouldShowNux": False}}
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=60)
        run_cli("db", "stop", env=env, timeout=120)
    said = log.read_text()
    assert "Found a dagster instance configuration value" not in said and "superseded" not in said, said[:3000]


# -- 5. the demo's output: a line or two per step, the detail in a log file it names -------------------------
def test_the_demo_prints_a_line_per_step_and_keeps_the_detail_in_its_log(tmp_path):
    """`make demo` printed about 690 lines (dlt's progress blocks, a line per dbt node, Dagster's log lines)."""
    env = user_env(tmp_path / "home")
    try:
        result = run_cli("demo", "--customers", "20", "--months", "3", "--seed", "5", env=env)
    finally:
        run_cli("db", "stop", env=env, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    log = Path(env["SAAS_METRICS_HOME"]) / "logs" / "demo.log"
    assert f"(every line dlt, dbt and Dagster print: {log})..." in result.stdout
    assert len(lines) < 60 and len(result.stderr.splitlines()) < 5, result.stdout + result.stderr
    assert "  dbt_models ..." in lines and any(re.fullmatch(r"  dbt_models done in \d+s", line) for line in lines)
    assert any(re.fullmatch(r"  stripe done in \d+s", line) for line in lines), result.stdout
    assert "Current MRR" in result.stdout and "Demo finished in" in result.stdout
    assert not DBT_BUILDING.search(result.stdout + result.stderr)
    detail = log.read_text()
    assert DBT_BUILDING.search(detail) and "Done. PASS=" in detail and "dagster - INFO - refresh_job" in detail
