"""Operating it: a refresh killed with SIGKILL, two refreshes at once, CLI runs that are ordinary runs of
the code location, and failures that end fast in one line (issue 19, items 1, 5, 6; issue 17, part 3).

Everything runs the real `saas-metrics` command in a subprocess against a tiny demo warehouse (a refresh
costs the same whatever the account's size, so the account is as small as the assertions allow), and
the refreshes are shared: one sequence (`one_at_a_time`) holds a refresh in place, tries two more
against it, kills it, and lets the one that waited run; three tests read what it did."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from saas_metrics import runtime
from saas_metrics.demo.server import StripeProtocolServer
from saas_metrics.demo.store import Store
from saas_metrics.postgres import DAGSTER_DB_NAME
from tests.conftest import free_port, query
from tests.support.cli import CLI, run_cli, start_ui, user_env
from tests.support.preflight import GOOD_KEY, KINDS, bad_settings, operator_env

REPOSITORY_LABEL = "__repository__@orchestration.definitions"
WATERFALL_GAP = (
    "select starting_mrr + new_mrr + expansion_mrr + reactivation_mrr - contraction_mrr - churned_mrr "
    "+ fx_impact - ending_mrr from marts.mrr_monthly"
)


@pytest.fixture(scope="module")
def ops_env(tmp_path_factory):
    env = user_env(tmp_path_factory.mktemp("ops-home"))
    result = run_cli("demo", "--customers", "20", "--months", "3", "--seed", "5", env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    url = run_cli("db", "url", env=env).stdout.strip()
    yield env, url
    run_cli("db", "stop", env=env)


@contextlib.contextmanager
def cli_instance(env: dict):
    """The CLI's Dagster instance (of the home `env` names), opened from this process."""
    saved = os.environ.copy()  # prepare_environment exports the home's settings (DAGSTER_HOME, ...)
    try:
        os.environ.update(SAAS_METRICS_HOME=env["SAAS_METRICS_HOME"], SAAS_METRICS_PG_PORT=env["SAAS_METRICS_PG_PORT"])
        runtime.settings.cache_clear()
        runtime.prepare_environment()
        with dg.DagsterInstance.get() as instance:
            yield instance
    finally:
        os.environ.clear()
        os.environ.update(saved)
        runtime.settings.cache_clear()


@pytest.fixture
def instance(ops_env):
    with cli_instance(ops_env[0]) as instance:
        yield instance


def _runs(instance, **filters) -> list:
    return list(instance.get_runs(filters=dg.RunsFilter(**filters)))


def _wait_for_started_run(instance, known: set[str], deadline: float):
    while True:
        for run in _runs(instance, statuses=[dg.DagsterRunStatus.STARTED]):
            if run.run_id not in known:
                return run
        assert time.monotonic() < deadline, "the refresh did not start"
        time.sleep(0.2)


def _start_refresh(env: dict, instance) -> tuple[subprocess.Popen, dg.DagsterRun]:
    """`saas-metrics run` in a session of its own, once its run is STARTED."""
    known = {run.run_id for run in _runs(instance)}
    process = subprocess.Popen(
        [CLI, "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        return process, _wait_for_started_run(instance, known, time.monotonic() + 180)
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        raise


def _kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)  # the refresh and its dbt, as the OOM killer or a reboot would
    process.wait(timeout=60)


def _start_and_kill(env: dict, instance) -> dg.DagsterRun:
    process, run = _start_refresh(env, instance)
    _kill(process)
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
    return run


@dataclass
class OneAtATime:
    held: dg.DagsterRun  # the refresh held in place, then killed
    killed_at: float
    refused: subprocess.CompletedProcess  # `run` while it was held
    waited: tuple[int, str, str]  # `run --wait` started while it was held: exit code, stdout, stderr
    started_after_kill: list  # the runs started after the kill: the one that waited
    marts_before: list[tuple]


@pytest.fixture(scope="module")
def one_at_a_time(ops_env, tmp_path_factory) -> OneAtATime:
    """A refresh is started and, once STARTED (holding the refresh lock), stopped with SIGSTOP: it holds
    the lock for as long as the test needs, however slow the machine. Against it, `saas-metrics run` (it
    must end at once) and `saas-metrics run --wait` (it must wait); then the held refresh is killed with
    SIGKILL and the one that waited runs."""
    env, url = ops_env
    before = query(url, "select count(*), sum(mrr) from marts.customer_mrr_current")
    out = tmp_path_factory.mktemp("one-at-a-time")
    with cli_instance(env) as instance:
        held, run = _start_refresh(env, instance)
        try:
            os.killpg(held.pid, signal.SIGSTOP)
            refused = run_cli("run", env=env, timeout=120)
            with open(out / "stdout", "w") as stdout, open(out / "stderr", "w") as stderr:
                waits = subprocess.Popen(
                    [CLI, "run", "--wait"], env={**env, "PYTHONUNBUFFERED": "1"}, stdout=stdout, stderr=stderr
                )
            deadline = time.monotonic() + 180
            while "waiting for it to finish" not in (out / "stdout").read_text():
                assert waits.poll() is None, (out / "stderr").read_text()[-2000:]
                assert time.monotonic() < deadline, "`run --wait` did not say it waits"
                time.sleep(0.2)
            assert [r.run_id for r in _runs(instance, statuses=[dg.DagsterRunStatus.STARTED])] == [run.run_id]
        finally:
            killed_at = time.time()
            _kill(held)
        code = waits.wait(timeout=900)
        started_after_kill = [
            record.dagster_run
            for record in instance.get_run_records()
            if record.start_time and record.start_time >= killed_at
        ]
    return OneAtATime(
        held=run,
        killed_at=killed_at,
        refused=refused,
        waited=(code, (out / "stdout").read_text(), (out / "stderr").read_text()),
        started_after_kill=started_after_kill,
        marts_before=before,
    )


def test_a_refresh_killed_with_sigkill_does_not_block_the_next(ops_env, one_at_a_time, instance):
    """Issue 19.1: a dead run stayed STARTED for ever, and the queue (one refresh at a time) held every
    later refresh behind it. Now the next refresh, or the sensor (in the daemon), marks it failed."""
    env, url = ops_env
    killed = one_at_a_time.held
    code, stdout, stderr = one_at_a_time.waited
    assert code == 0, stderr[-2000:]
    assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    assert f"Marked run {killed.run_id[:8]} of transform_job failed: its process is gone." in stdout

    from orchestration.defs.sensors import dead_refresh_runs_sensor

    killed = _start_and_kill(env, instance)
    # what the daemon does every minute, for a queued nightly held behind the dead run
    dead_refresh_runs_sensor(dg.build_sensor_context(instance=instance))
    assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
    # nothing is left in progress to hold the queue
    in_progress = _runs(instance, statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])
    assert in_progress == []
    rows = query(url, "select count(*) from marts.mrr_monthly")
    assert rows[0][0] > 0


def test_two_refreshes_at_once_build_one_at_a_time(ops_env, one_at_a_time):
    """Issue 19.6: three refreshes started together raced in dlt and dbt. Now, while one runs, another
    without --wait ends at once with one line naming it, and `--wait` waits for it: its run starts only
    once the first is gone, and the marts are whole after both."""
    _, url = ops_env
    refused = one_at_a_time.refused
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 1 and len(lines) == 1, refused.stderr[-2000:]
    assert lines[0].startswith(f"saas-metrics: error: a refresh is running (run {one_at_a_time.held.run_id[:8]}, ")
    assert "Traceback" not in refused.stderr
    code, stdout, stderr = one_at_a_time.waited
    assert code == 0, stderr[-2000:]
    assert f"a refresh is running (run {one_at_a_time.held.run_id[:8]}, since " in stdout
    # the refresh that waited did not overlap the one it waited for: its run (the only one) began after that
    # one died, and succeeded
    (waited,) = one_at_a_time.started_after_kill
    assert waited.job_name == "transform_job" and waited.status == dg.DagsterRunStatus.SUCCESS
    assert query(url, "select count(*), sum(mrr) from marts.customer_mrr_current") == one_at_a_time.marts_before
    rows = query(url, WATERFALL_GAP)
    assert rows and all(difference == 0 for (difference,) in rows)


def test_a_cli_run_is_an_ordinary_run_of_the_code_location(one_at_a_time, instance, ops_env):
    """Issue 17.3: CLI runs had no code-location origin: not in the job's Runs tab, and Re-execute failed
    with `CheckError: Expected non-None value`. Re-executed here as the UI does: through a workspace
    loaded like `dagster dev -m orchestration.definitions`, by the run's origin."""
    from dagster._core.execution.api import execute_run
    from dagster._core.execution.plan.resume_retry import ReexecutionStrategy
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._utils.hosted_user_process import recon_job_from_origin

    # the job's Runs tab lists runs of the job by its repository label
    (waited,) = one_at_a_time.started_after_kill
    listed = _runs(instance, job_name="transform_job", tags={".dagster/repository": REPOSITORY_LABEL})
    assert waited.run_id in [run.run_id for run in listed], "the CLI's run is not in the job's Runs tab"
    parent = instance.get_run_by_id(waited.run_id)
    assert parent.tags["saas_metrics/trigger"] == "cli"
    assert parent.tags["saas_metrics/refresh"] == "manual"  # only the schedule's runs say nightly

    target = ModuleTarget(
        module_name="orchestration.definitions", attribute=None, working_directory=os.getcwd(), location_name=None
    )
    with WorkspaceProcessContext(instance, target) as workspace:
        request = workspace.create_request_context()
        origin = parent.remote_job_origin
        assert origin is not None
        location = request.get_code_location(origin.location_name)
        remote_job = location.get_repository(origin.repository_origin.repository_name).get_full_job(parent.job_name)
        child = instance.create_reexecuted_run(
            request_context=request,
            parent_run=parent,
            code_location=location,
            remote_job=remote_job,
            strategy=ReexecutionStrategy.ALL_STEPS,
        )
    sessions = f"select sessions from pg_stat_database where datname = '{DAGSTER_DB_NAME}'"
    (before,) = query(ops_env[1], sessions)[0]
    rerun = execute_run(recon_job_from_origin(child.job_code_origin), child, instance)
    assert rerun.success
    assert instance.get_run_by_id(child.run_id).parent_run_id == parent.run_id
    # issue 30: a run launched by the UI or the schedule (a run worker with an instance of its own) stored
    # each of its events on a new connection: 1,498 connections for this run's 801 events; the warehouse
    # resource pools them (93 when measured: a pool per storage, overflow while dbt's events stream)
    time.sleep(1.5)  # PostgreSQL publishes a session's statistics within a second of its end
    (after,) = query(ops_env[1], sessions)[0]
    events = len(instance.all_logs(child.run_id))
    assert events > 300
    assert after - before < 200, f"{after - before} connections for {events} events"


# -- failing fast, in one line ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def stripe_server(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("preflight") / "stripe.sqlite")
    with StripeProtocolServer(store, api_key=GOOD_KEY, now=int(time.time())) as server:
        yield server


@pytest.mark.parametrize("kind", KINDS)
def test_a_refresh_that_cannot_work_ends_in_one_line(kind, pg, fresh_database, stripe_server, tmp_path):
    """Issue 19.5: these took 22 s to 315 s and printed up to 180 lines of traceback. Now one line naming
    what to fix (how fast: `python -m bench.preflight`; a test does not time it)."""
    settings, message = bad_settings(kind, fresh_database("preflight"), pg.password, stripe_server.url)
    env = operator_env(tmp_path / "home", settings)
    result = run_cli("run", env=env, timeout=120)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[-1].startswith("saas-metrics: error: ") and message in lines[-1], lines[-1]
    assert "Traceback" not in result.stderr
    debug = run_cli("--debug", "run", env=env, timeout=120)
    assert "Traceback" in debug.stderr and message in debug.stderr.strip().splitlines()[-1]


# -- a warehouse URL without a password (issue 14, item 6) ----------------------------------------------
@pytest.fixture(scope="module")
def passwordless(pg, tmp_path_factory):
    """Two roles on the session's PostgreSQL: `trusted` (trust authentication, no password at all) and
    `pgpass_user` (a password only ~/.pgpass knows); a database each."""
    import psycopg2

    hba = pg.pgdata / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text("host all trusted 127.0.0.1/32 trust\n" + original)
    conn = psycopg2.connect(pg.url("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select pg_reload_conf()")
        for role, password in (("trusted", None), ("pgpass_user", "only-pgpass-knows")):
            cur.execute(f"drop database if exists {role}_warehouse")
            cur.execute(f"drop role if exists {role}")
            cur.execute(f"create role {role} login" + (f" password '{password}'" if password else ""))
            cur.execute(f"create database {role}_warehouse owner {role}")
    store = Store(tmp_path_factory.mktemp("passwordless") / "stripe.sqlite")
    from saas_metrics.demo.account import generate

    now = int(time.time())
    generate(store, customers=20, months=4, seed=11, now=now, progress_every=10**9)
    pgpass = tmp_path_factory.mktemp("pgpass") / "pgpass"
    pgpass.write_text(f"127.0.0.1:{pg.port}:pgpass_user_warehouse:pgpass_user:only-pgpass-knows\n")
    pgpass.chmod(0o600)
    with StripeProtocolServer(store, api_key="sk_test_passwordless", now=now) as server:
        yield server, pgpass
    hba.write_text(original)
    with conn.cursor() as cur:
        cur.execute("select pg_reload_conf()")
    conn.close()


@pytest.mark.parametrize("auth", ["trust", "pgpass"])
def test_a_warehouse_url_without_a_password_works_as_psql_would(auth, pg, passwordless, tmp_path):
    """`DATABASE_URL=postgresql://me@host/db` died in the Stripe load with a page of dlt traceback
    ("Missing 1 field(s) in configuration PostgresClientConfiguration: credentials")."""
    server, pgpass = passwordless
    role = "trusted" if auth == "trust" else "pgpass_user"
    url = f"postgresql://{role}@127.0.0.1:{pg.port}/{role}_warehouse"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DAGSTER_", "DATABASE_URL", "PG"))}
    env.update(
        SAAS_METRICS_HOME=str(tmp_path / "home"),
        DATABASE_URL=url,
        STRIPE_API_KEY="sk_test_passwordless",
        STRIPE_API_BASE=server.url,
        STRIPE_MAX_RPS="2000",
        PGPASSFILE=str(pgpass),
    )
    result = run_cli("run", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    password = "" if auth == "trust" else ":only-pgpass-knows"
    loaded = query(url.replace(f"{role}@", f"{role}{password}@"), "select count(*) from raw_stripe.customers")
    assert loaded == [(20,)]
    marts = query(url.replace(f"{role}@", f"{role}{password}@"), "select count(*) from marts.customer_mrr_current")
    assert marts[0][0] > 0


def test_a_failed_dbt_build_names_what_failed():
    """Issue 19.5: the reason stopped at "The dbt CLI process with command" and never named the tests."""
    from orchestration.defs.dbt import dbt_failure_reason

    run_results = {
        "results": [
            {"unique_id": "model.saas_metrics.mrr_movements", "status": "success"},
            {"unique_id": "test.saas_metrics.assert_mrr_waterfall_balances", "status": "fail", "failures": 2},
            {"unique_id": "test.saas_metrics.unique_mrr_monthly_month.3b2", "status": "fail", "failures": 1},
            {
                "unique_id": "model.saas_metrics.mrr_by_plan",
                "status": "error",
                "message": 'Database Error in model mrr_by_plan\n  column "x" does not exist',
            },
            {"unique_id": "model.saas_metrics.saas_kpis_monthly", "status": "skipped"},
            {"unique_id": "test.saas_metrics.not_null_x", "status": "warn"},
        ]
    }
    assert dbt_failure_reason(run_results) == (
        "dbt build failed: 2 test(s) failed: assert_mrr_waterfall_balances, unique_mrr_monthly_month; "
        '1 model(s) errored: mrr_by_plan (Database Error in model mrr_by_plan column "x" does not exist); '
        "1 skipped after them"
    )


def test_a_table_of_an_older_version_says_to_refresh_in_full():
    """Issue 27: staging gained columns (attempt_count, cancellation_reason); an incremental table an older version
    built refuses them (on_schema_change: fail), and the run says what to do."""
    from orchestration.defs.dbt import dbt_failure_reason

    message = (
        "Compilation Error in model stg_stripe__invoices (models/staging/stripe/stg_stripe__invoices.sql)\n"
        "  The source and target schemas on this incremental model are out of sync!\n  They can be reconciled"
    )
    run_results = {
        "results": [
            {"unique_id": "model.saas_metrics.stg_stripe__invoices", "status": "error", "message": message},
            {"unique_id": "model.saas_metrics.mrr_monthly", "status": "skipped"},
        ]
    }
    reason = dbt_failure_reason(run_results)
    assert reason.startswith("dbt build failed: 1 model(s) errored: stg_stripe__invoices (Compilation Error")
    assert reason.endswith(
        "; 1 skipped after them. Its table was built by an older version of saas-metrics, whose columns differ: "
        "run `saas-metrics run --full-refresh` once after upgrading"
    )


def test_ui_stops_on_sigterm(ops_env):
    """Issue 17.3: `saas-metrics ui` started as a background job (SIGINT ignored, as a shell starts one)
    ignored SIGTERM: `dagster dev` maps SIGTERM to SIGINT's handler."""
    import urllib.request

    env, _ = ops_env
    port = free_port()
    ui = start_ui(env, port, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline and ui.poll() is None, "the UI did not come up"
                time.sleep(1)
        ui.send_signal(signal.SIGTERM)  # to the process alone, as `kill PID` or a service manager does
        assert ui.wait(timeout=60) is not None
    finally:
        if ui.poll() is None:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()


# -- faults that are not configuration (issue 31) ------------------------------------------------------
PEOPLE = ("Probe Person", "@customers.example")  # what every customer's name and email of `named_account` hold


@pytest.fixture(scope="module")
def named_account(tmp_path_factory):
    """A small account whose customers have names and emails (the demo's have no names), served over Stripe's
    protocol with faults the test adds."""
    from saas_metrics.demo.account import generate
    from tests.support.faults import Faults

    store = Store(tmp_path_factory.mktemp("named") / "stripe.sqlite")
    now = int(time.time())
    generate(store, customers=15, months=3, seed=13, now=now, progress_every=10**9)
    for n, customer in enumerate(list(store.iter_type("customer"))):
        store.put({**customer, "name": f"Probe Person {n:02d}", "email": f"probe.person.{n:02d}@customers.example"})
    faults = Faults()
    with StripeProtocolServer(store, api_key="sk_test_named", now=now, faults=faults) as server:
        yield server, faults


def _named_env(server, fresh_database, tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DAGSTER_", "DATABASE_URL"))}
    env.update(
        SAAS_METRICS_HOME=str(tmp_path / "home"),
        DATABASE_URL=fresh_database("faults"),
        STRIPE_API_KEY="sk_test_named",
        STRIPE_API_BASE=server.url,
        STRIPE_MAX_RPS="2000",
        **extra,
    )
    return env


def _event_log(url: str) -> str:
    """Every event of every run Dagster stored in the warehouse (DAGSTER_PG_URL is DATABASE_URL here)."""
    return "\n".join(event for (event,) in query(url, "select event from event_logs"))


def test_one_reset_in_the_first_stripe_check_is_retried(named_account, fresh_database, tmp_path):
    """Issue 31.2: one reset connection in the CLI's first request ended the run in 3 s with "cannot reach
    STRIPE_API_BASE ...: fix STRIPE_API_BASE", a setting that was right. Now it is tried again, as the load
    tries a request; only a server refusing every attempt (or an unknown host, a refused key) is configuration."""
    server, faults = named_account
    faults.rules.clear()
    faults.add("reset", r"^/v1/customers$", times=1)
    env = _named_env(server, fresh_database, tmp_path)
    result = run_cli("run", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert faults.rules[0]["times"] == 0
    assert f"checking STRIPE_API_BASE ({server.url}): connection reset, then an answer on attempt 2" in result.stderr
    assert query(env["DATABASE_URL"], "select count(*) from raw_stripe.customers") == [(15,)]


def test_bodies_cut_short_are_retried_and_never_printed(named_account, fresh_database, tmp_path):
    """Issue 31.3: a 200 whose JSON was cut short was not retried as a request, only the whole step (minutes
    later); the run then failed with the full body as its last line (customers' names and emails), and Dagster's
    event log kept it. Now such a body is retried like a 5xx, and neither the output nor the event log quotes it,
    whether the retries win (first run) or not (second: the body is cut short on every attempt)."""
    server, faults = named_account
    faults.rules.clear()
    faults.add("truncate", r"^/v1/customers$", times=2)  # the CLI's first check, then the load's first page
    faults.add("truncate", r"^/v1/invoices$", times=1)
    env = _named_env(server, fresh_database, tmp_path)
    result = run_cli("run", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(rule["times"] == 0 for rule in faults.rules)
    assert "GET /v1/invoices answered 200 with a body that is not JSON; retrying in " in result.stderr
    assert query(env["DATABASE_URL"], "select count(*) from raw_stripe.customers") == [(15,)]
    said = result.stdout + result.stderr + _event_log(env["DATABASE_URL"])
    assert not [person for person in PEOPLE if person in said]

    faults.rules.clear()
    faults.add("truncate", r"^/v1/customers$", times=1000)
    env = _named_env(server, fresh_database, tmp_path, SAAS_METRICS_INGEST_RETRIES="0")
    result = run_cli("run", env=env)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("saas-metrics: error: step stripe failed: ") and len(last) < 300, last[:500]
    assert re.search(r"GET /v1/customers answered 200 with a body that is not JSON \([\d,]+ bytes\)$", last), last
    assert "GET /v1/customers answered 200 with a body that is not JSON; retrying in " in result.stderr
    assert ", attempt 7 of 7" in result.stderr  # every request retry was made before the step failed
    said = result.stdout + result.stderr + _event_log(env["DATABASE_URL"])
    assert not [person for person in PEOPLE if person in said]


def _in_a_full_folder(folder: Path, command: list[str]) -> list[str] | None:
    """`command` run with a 256 KiB tmpfs mounted on `folder` (the load fills it), in a mount namespace of its
    own (nothing to unmount after); None where this machine lets no one mount (no root, no user namespaces)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = 'mount -t tmpfs -o size=256k saas-metrics-full "$0" && exec "$@"'
    for unshare in (["unshare", "--mount"], ["unshare", "--map-root-user", "--mount"]):
        try:
            probe = subprocess.run([*unshare, "sh", "-c", script, str(folder), "true"], capture_output=True)
        except FileNotFoundError:
            return None
        if probe.returncode == 0:
            return [*unshare, "sh", "-c", script, str(folder), *command]
    return None


# where no tmpfs can be mounted: Python's own `open` fails with ENOSPC for files written in the folder
NO_SPACE_AT_OPEN = """
import builtins, errno, io, os
_folder = os.environ["SAAS_METRICS_TEST_FULL_FOLDER"] + os.sep
_open = io.open
def _open_in_a_full_folder(file, mode="r", *args, **kwargs):
    if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+"):
        if os.path.abspath(os.fspath(file)).startswith(_folder):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(file))
    return _open(file, mode, *args, **kwargs)
builtins.open = io.open = _open_in_a_full_folder
"""


def test_a_full_disk_in_the_dlt_folder_fails_at_once_in_one_line(named_account, fresh_database, tmp_path):
    """Issue 31.4: no space left in the dlt folder was retried like an outage (four minutes) before failing.
    Now the load fails at once, without a retry, in one line naming the folder. The folder is a real tmpfs of
    256 KiB where this machine allows a mount (the load's files fill it), else ENOSPC is injected where Python
    opens a file for writing in it."""
    server, faults = named_account
    faults.rules.clear()
    env = _named_env(server, fresh_database, tmp_path)
    dlt_folder = tmp_path / "home" / "dlt"
    command = _in_a_full_folder(dlt_folder, [CLI, "run"])
    if command is None:
        (tmp_path / "inject").mkdir()
        (tmp_path / "inject" / "sitecustomize.py").write_text(NO_SPACE_AT_OPEN)
        env.update(PYTHONPATH=str(tmp_path / "inject"), SAAS_METRICS_TEST_FULL_FOLDER=str(dlt_folder))
        command = [CLI, "run"]
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    # the three loads write there: whichever fails first is the one named
    assert re.fullmatch(
        rf"saas-metrics: error: step (stripe|finance|product) failed: no space left on {re.escape(str(dlt_folder))}",
        last,
    ), last[:1000]
    assert "retrying in" not in result.stdout + result.stderr
    assert elapsed < 120, elapsed  # not minutes of retries
