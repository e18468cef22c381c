"""Benchmark: the nightly `saas-metrics run` end to end, as an operator runs it (issue 19, item 8).

    python -m bench.nightly_run --customers 100000 --months 36 --work /tmp/nightlywork

Generates the account (seeded; kept in --work), serves it over Stripe's protocol from a process of its
own, and runs the real CLI (`saas-metrics run`, a subprocess with its own embedded PostgreSQL under a
temporary SAAS_METRICS_HOME) twice: the first run loads everything over HTTP and builds every mart
(timed, not the target); the second is the nightly with nothing new since. Reported for the nightly:
the whole command's wall time, and where it went: the process until Dagster starts the run (imports,
definitions, run creation), each step of the run (Stripe listing, product and finance loads, dbt
parse + build + checks, predictions, report) as spans of their log lines, and the dbt build alone
(run_results.json). Results: bench/results/nightly_run.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import account_parser, generated_account, save
from bench.stripe_ingest import API_KEY, server_process
from saas_metrics.config import DBT_PROJECT_DIR

# Dagster's console lines: "2026-11-30 13:01:49 +0000 - dagster - INFO - refresh_job - <run id> - <step> - ..."
DAGSTER_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) [+-]\d{4} - dagster - \w+ - \w+ - [0-9a-f-]{36} - (\S+) - "
)


def run_cli(env: dict, label: str, timeline: Path | None = None) -> dict:
    """`saas-metrics run` as a subprocess; its wall time, the time until Dagster logged the run's first
    line, and each step's span (its first to its last log line, to the second: Dagster logs a step's own
    duration only at DEBUG)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [*os.environ.get("NIGHTLY_BENCH_WRAP", "").split(), str(Path(sys.executable).parent / "saas-metrics"), "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run_started_at = None
    spans: dict[str, list[float]] = {}
    lines = []
    for line in process.stdout:
        lines.append(f"{time.perf_counter() - started:7.2f} {line}")
        match = DAGSTER_LINE.match(line)
        if match:
            if run_started_at is None:
                run_started_at = time.perf_counter() - started
            at = time.mktime(time.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"))
            span = spans.setdefault(match.group(2), [at, at])
            span[1] = at
    steps = {step: round(last - first, 1) for step, (first, last) in spans.items() if step != "RUN_START"}
    code = process.wait()
    wall = round(time.perf_counter() - started, 2)
    if timeline is not None:  # every line of the run, with the second it was printed at
        timeline.write_text("".join(lines))
    if code != 0:
        sys.stdout.write("".join(lines[-40:]))
        raise SystemExit(f"{label}: saas-metrics run failed ({code})")
    print(f"  {label}: {wall:.1f}s (run started after {run_started_at or 0:.1f}s); steps {steps}", flush=True)
    return {"wall_seconds": wall, "until_run_started_seconds": round(run_started_at or 0, 2), "steps_seconds": steps}


def dbt_nodes(target_root: Path) -> dict:
    """The last dbt invocation of a run (its own target folder, dbt_models-<id>): elapsed, slowest nodes."""
    target = max(target_root.glob("dbt_models-*"), key=lambda folder: folder.stat().st_mtime)
    run_results = json.loads((target / "run_results.json").read_text())
    results = run_results["results"]
    slowest = sorted(results, key=lambda r: -r["execution_time"])[:10]
    return {
        "dbt_elapsed_seconds": round(run_results.get("elapsed_time", 0), 2),
        "dbt_nodes": len(results),
        "dbt_sum_of_node_seconds": round(sum(r["execution_time"] for r in results), 2),
        "dbt_slowest_nodes": {r["unique_id"].split(".", 2)[-1]: round(r["execution_time"], 2) for r in slowest},
    }


@contextlib.contextmanager
def _home(keep: Path | None):
    if keep is None:
        with tempfile.TemporaryDirectory(prefix="nightly-bench-home-") as home:
            yield home
    else:
        keep.mkdir(parents=True, exist_ok=True)
        yield str(keep)


def main() -> None:
    parser = account_parser(__doc__, work_help="keep the generated account here and reuse it")
    parser.add_argument(
        "--home",
        type=Path,
        help="SAAS_METRICS_HOME to keep between invocations: when it holds a loaded warehouse, the first run "
        "is skipped and only the nightly is measured (for iterating on the nightly)",
    )
    parser.add_argument("--max-rps", type=float, default=100.0, help="STRIPE_MAX_RPS of the nightly (default 100)")
    parser.add_argument(
        "--first-max-rps", type=float, default=1000.0, help="STRIPE_MAX_RPS of the first load (default 1000)"
    )
    args = parser.parse_args()
    results: dict = {"customers": args.customers, "months": args.months, "max_rps": args.max_rps}
    print(f"Nightly run benchmark: {args.customers} customers, {args.months} months")
    store, now, work = generated_account(args, "nightly-bench-", results)
    store_path = str(store.path)
    store.close()
    with (
        _home(args.home) as home,
        server_process(store_path, now, 0.0, precompute=False) as (url, server_stats),
    ):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SAAS_METRICS_", "STRIPE_", "DATABASE_URL"))},
            "SAAS_METRICS_HOME": home,
            "STRIPE_API_KEY": API_KEY,
            "STRIPE_API_BASE": url,
        }
        loaded = Path(home, ".first-run-done")
        if loaded.exists():
            print(f"  first run: skipped ({home} holds a loaded warehouse)")
        else:
            results["first_run"] = run_cli(
                {**env, "STRIPE_MAX_RPS": str(args.first_max_rps)}, "first run (everything over HTTP, every mart built)"
            )
            loaded.touch()
        results["nightly_run"] = run_cli(
            {**env, "STRIPE_MAX_RPS": str(args.max_rps)},
            "nightly run (nothing new)",
            timeline=Path(home) / "nightly-timeline.log",
        )
        results["nightly_run"].update(dbt_nodes(DBT_PROJECT_DIR / "target"))
        served = server_stats()
        results["stripe_requests_both_runs"] = served["requests"]
        env_down = {**env, "STRIPE_API_KEY": ""}
        subprocess.run(
            [str(Path(sys.executable).parent / "saas-metrics"), "db", "stop"], env=env_down, capture_output=True
        )
    nightly = results["nightly_run"]
    print(
        f"  nightly: {nightly['wall_seconds']:.1f}s end to end (target < 30 s); dbt build "
        f"{nightly['dbt_elapsed_seconds']:.1f}s (target < 15 s)"
    )
    print(f"results: {save('nightly_run', results)}")


if __name__ == "__main__":
    main()
