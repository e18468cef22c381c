"""An interrupted refresh (issue 31, item 5): `saas-metrics run` stopped by SIGTERM or Ctrl-C ended with
`step dbt_models failed: dagster._core.errors.DagsterExecutionInterruptedError` (and SIGTERM before the run
began killed it without a word). Now it stops in order: one line saying what the marts hold, exit 128 + the
signal, the refresh lock released, the run ended, and nothing published.

The real command in a subprocess against a tiny demo warehouse, interrupted once dbt has started building:
with SIGTERM sent to the process alone (`kill PID`, a service manager), and with SIGINT sent to its whole
process group (what Ctrl-C in a terminal does: dbt and Dagster's helper processes get it too)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from saas_metrics import runtime
from tests.conftest import query
from tests.support.cli import CLI, run_cli, user_env

LAST_LINE = "saas-metrics: interrupted; the marts are as the last good refresh left them"
DBT_BUILDING = re.compile(r"^\d+ of \d+ START ", re.MULTILINE)  # dbt's line for a node it starts
# every relation of the schema BI tools read, by identity: a publish moves new tables in (new oids)
MARTS_RELATIONS = (
    "select relation.relname, relation.oid::bigint from pg_class as relation "
    "join pg_namespace as namespace on namespace.oid = relation.relnamespace "
    "where namespace.nspname = 'marts' and relation.relkind in ('r', 'v') order by relation.relname"
)
MRR_MONTHLY = "select md5(coalesce(string_agg(mart::text, '|' order by mart.month), '')) from marts.mrr_monthly as mart"


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """A home whose marts a first good refresh built (the demo's, on a tiny account)."""
    env = user_env(tmp_path_factory.mktemp("interrupted-home"))
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


def interrupt_while_dbt_builds(env: dict, out: Path, send) -> tuple[int, str, list]:
    """`saas-metrics run` (transform_job: the home has no Stripe key), interrupted by `send(pid)` once dbt
    has started a node; its exit code, its output (stdout and stderr as a terminal shows them, in order),
    and the processes it had started by then."""
    with open(out, "w") as output:
        process = subprocess.Popen(
            [CLI, "run"],
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group of its own, as a shell gives a job
        )
    deadline = time.monotonic() + 600
    try:
        while not DBT_BUILDING.search(out.read_text(errors="replace")):
            assert process.poll() is None, out.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "dbt did not start"
            time.sleep(0.2)
        children = psutil.Process(process.pid).children(recursive=True)
        send(process.pid)
        code = process.wait(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return code, out.read_text(errors="replace"), children


def _assert_interrupted_in_order(url, instance, code, output, children, expected_code, before):
    assert code == expected_code, output[-3000:]
    assert output.strip().splitlines()[-1] == LAST_LINE, output[-3000:]
    for said in ("DagsterExecutionInterruptedError", "Traceback", "Stack Trace"):
        assert said not in output, output[-3000:]
    # nothing half-published, nor published whole: the same relations, the same rows
    assert (query(url, MARTS_RELATIONS), query(url, MRR_MONTHLY)) == before
    # the run ended (Dagster's status for an interrupted run: failed), nothing is left in progress
    (run,) = instance.get_runs(limit=1)
    assert run.job_name == "transform_job" and run.status == dg.DagsterRunStatus.FAILURE
    unfinished = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
    assert instance.get_runs(filters=dg.RunsFilter(statuses=unfinished)) == []
    # dbt and the rest of what the refresh started are gone with it
    _, alive = psutil.wait_procs(children, timeout=30)
    assert [process.cmdline() for process in alive if process.status() != psutil.STATUS_ZOMBIE] == []


def test_an_interrupted_refresh_stops_in_order(warehouse, tmp_path):
    env, url = warehouse
    before = (query(url, MARTS_RELATIONS), query(url, MRR_MONTHLY))
    assert before[0], "the first refresh published no marts"
    with cli_instance(env) as instance:
        code, output, children = interrupt_while_dbt_builds(
            env, tmp_path / "sigterm", lambda pid: os.kill(pid, signal.SIGTERM)
        )
        _assert_interrupted_in_order(url, instance, code, output, children, 143, before)

        code, output, children = interrupt_while_dbt_builds(
            env, tmp_path / "sigint", lambda pid: os.killpg(pid, signal.SIGINT)
        )
        _assert_interrupted_in_order(url, instance, code, output, children, 130, before)

    # the refresh lock was released: the next refresh runs, and publishes
    result = run_cli("run", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "a refresh is running" not in result.stdout + result.stderr
    assert query(url, MARTS_RELATIONS) != before[0]
