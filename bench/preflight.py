"""Benchmark: how long `saas-metrics run` takes to refuse a refresh that cannot work (issue 19, item 5).

    python -m bench.preflight [--repeat 5]

Each mistake of tests/support/preflight.py (a refused STRIPE_API_KEY, an unreachable STRIPE_API_BASE, a
wrong password, a missing database, a closed port, a URL that is not PostgreSQL), against a throwaway
PostgreSQL and a Stripe-protocol server on 127.0.0.1: the real CLI in a subprocess, `--repeat` times;
the median, fastest and slowest wall time and the CPU time of each, and the line it ended with. Before
issue 19 these took 22 s to 315 s. tests/test_operations.py checks the line; only this measures the time
(a clock in a test fails on a loaded machine). Results: bench/results/preflight.json.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

from bench.common import save, throwaway_postgres
from saas_metrics.demo.server import StripeProtocolServer
from saas_metrics.demo.store import Store
from tests.support.preflight import GOOD_KEY, KINDS, bad_settings, operator_env

CLI = str(Path(sys.executable).parent / "saas-metrics")


def one_run(env: dict) -> tuple[float, float, str]:
    """Wall and CPU seconds of one `saas-metrics run` (with its children), and its last line on stderr."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run([CLI, "run"], env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    lines = result.stderr.strip().splitlines()
    return wall, cpu, (lines[-1] if lines else f"(exit {result.returncode}, nothing on stderr)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results: dict = {"repeat": args.repeat, "load_average": os.getloadavg(), "kinds": {}}
    with throwaway_postgres() as pg, tempfile.TemporaryDirectory(prefix="saas-metrics-bench-") as work:
        conn = psycopg2.connect(pg.url("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("create database preflight")
        conn.close()
        store = Store(Path(work) / "stripe.sqlite")
        with StripeProtocolServer(store, api_key=GOOD_KEY, now=int(time.time())) as server:
            for kind in KINDS:
                settings, message = bad_settings(kind, pg.url("preflight"), pg.password, server.url)
                env = operator_env(Path(work) / "home", settings)
                runs = [one_run(env) for _ in range(args.repeat)]
                walls = [wall for wall, _, _ in runs]
                results["kinds"][kind] = {
                    "median_seconds": round(statistics.median(walls), 2),
                    "min_seconds": round(min(walls), 2),
                    "max_seconds": round(max(walls), 2),
                    "median_cpu_seconds": round(statistics.median(cpu for _, cpu, _ in runs), 2),
                    "line": runs[-1][2],
                    "line_as_tested": message in runs[-1][2],
                }
                print(f"  {kind}: median {results['kinds'][kind]['median_seconds']:.2f}s  {runs[-1][2]}", flush=True)
    results["load_average_after"] = os.getloadavg()
    print(f"results: {save('preflight', results)}")


if __name__ == "__main__":
    main()
