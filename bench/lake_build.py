"""Benchmark: the product rollups on PostgreSQL and on Spark (lake mode), side by side, full and nightly.

    python -m bench.lake_build [--events 10000000] [--accounts 5000] [--days 365] [--workers 2]
                               [--worker-memory 2g] [--port 27600] [--work DIR]

The same events (bench/product_build.py's generator: sessions of 8 events, 10 event names, a seventh of the
sessions by admins) are written into raw_product.events of a throwaway PostgreSQL and into a lake folder as
the loader lays it out (a Delta table partitioned by event_date, written by delta-rs). Then, on each engine,
the models tagged spark (stg_product__events, int_product_user_days, int_product_account_event_days) and
their tests are built:
  - full: from scratch;
  - nightly: after one more day of events plus late events for the day two days earlier, loaded as a new
    load: the incremental build of the days they touch; on Spark, the publish of those days into PostgreSQL.
For each: wall seconds; CPU-seconds of the engine's processes (PostgreSQL's server processes; Spark's master,
workers, executors and driver) plus dbt's own; the peak resident memory of the engine's processes (sampled
every 0.5 s). Spark runs on a local cluster (`saas-metrics lake start`'s, on --port and the 20 ports after it).
Results: bench/results/lake_build.json. On a shared machine, the CPU-seconds are the figure that holds.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psycopg2
import pyarrow as pa

from bench.common import dbt, save, throwaway_postgres
from bench.product_build import insert_events
from ingestion import product
from ingestion.raw_tables import ensure_tables
from saas_metrics.dbt_cli import run_dbt
from saas_metrics.lake import spark
from saas_metrics.lake.cluster import ClusterError, LocalCluster
from saas_metrics.lake.publish import publish_rollups
from saas_metrics.lake.settings import LakeSettings

NAMES = ["login", "login", "dashboard_viewed", "report_created", "export_downloaded", "comment_added",
         "alert_configured", "invite_sent", "integration_connected", "dashboard_viewed"]  # fmt: skip
CHUNK = 2_000_000
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def lake_events(first: int, count: int, accounts: int, start: float, span: float, load_id: str) -> pa.Table:
    """The rows insert_events writes into PostgreSQL, the same ones, as the lake's Arrow table."""
    g = np.arange(first, first + count, dtype=np.int64)
    session = g // 8
    account = 1 + (session * 7919) % accounts
    user = (session * 7919) % accounts
    occurred = start + ((g - first) / count) * span
    micros = (occurred * 1e6).astype(np.int64)
    admin = session % 7 == 0
    table = pa.table(
        {
            "event_id": pa.array(np.char.add("evt_", g.astype(str))),
            "account_id": pa.array(np.char.add("acct_", np.char.zfill(account.astype(str), 6))),
            "user_id": pa.array(
                np.char.add(np.char.add(np.char.add("user_", user.astype(str)), "_"), (session % 7).astype(str))
            ),
            "event_name": pa.array(np.array(NAMES)[(g * 104729) % 10]),
            "properties": pa.array(np.where(admin, '{"role": "admin"}', None).tolist(), pa.string()),
            "occurred_at": pa.array(micros, pa.timestamp("us", "UTC")),
            "_dlt_load_id": pa.array(np.full(count, load_id)),
            "_dlt_id": pa.array(np.char.add("bench_", g.astype(str))),
        }
    )
    days = pa.array((micros // 86_400_000_000).astype(np.int32), pa.int32()).cast(pa.date32())
    return table.append_column("event_date", days)


def write_lake(path: Path, first: int, count: int, accounts: int, start: float, span: float, load_id: str) -> None:
    from deltalake import write_deltalake

    for offset in range(0, count, CHUNK):
        n = min(CHUNK, count - offset)
        chunk_start = start + span * offset / count
        data = lake_events(first + offset, n, accounts, chunk_start, span * n / count, load_id)
        write_deltalake(str(path), data, partition_by=["event_date"], mode="append")


class Sampler:
    """CPU-seconds and peak resident memory of process trees (their roots' pids), from /proc. A process's CPU
    is its own and its reaped children's (a PostgreSQL backend or a Spark executor that ended is counted in
    its parent's), at the end of a phase, less what the same process had at its start; memory is sampled
    every 0.5 s."""

    def __init__(self, roots: list[int]):
        self.roots = roots
        self.peak_rss = 0
        self._scan_cpu = 0.0
        self._stop = threading.Event()

    def _tree(self) -> dict[int, tuple[float, int]]:
        stats = {}
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                cpu = sum(int(value) for value in fields[11:15]) / TICKS  # utime, stime, cutime, cstime
                stats[int(entry.name)] = (int(fields[1]), cpu, int(fields[21]) * PAGE)
        members, frontier = set(), [pid for pid in self.roots if pid in stats]
        while frontier:
            pid = frontier.pop()
            members.add(pid)
            frontier += [child for child, (ppid, _, _) in stats.items() if ppid == pid and child not in members]
        return {pid: (stats[pid][1], stats[pid][2]) for pid in members}

    def _run(self) -> None:
        started = time.thread_time()
        while not self._stop.wait(0.5):
            self.peak_rss = max(self.peak_rss, sum(rss for _, rss in self._tree().values()))
        self._scan_cpu = time.thread_time() - started

    @contextmanager
    def measuring(self, label: str, results: dict):
        start = {pid: cpu for pid, (cpu, _) in self._tree().items()}
        self.peak_rss = 0
        client = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = resource.getrusage(resource.RUSAGE_SELF)
        thread = threading.Thread(target=self._run, daemon=True)
        self._stop.clear()
        thread.start()
        started = time.perf_counter()
        yield
        wall = time.perf_counter() - started
        self._stop.set()
        thread.join()
        end = self._tree()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        own_after = resource.getrusage(resource.RUSAGE_SELF)
        engine = sum(cpu - start.get(pid, 0.0) for pid, (cpu, _) in end.items())
        # dbt (a subprocess) and what runs in this process (the publish's dlt load), less the sampler's own scans
        dbt_cpu = (after.ru_utime + after.ru_stime) - (client.ru_utime + client.ru_stime)
        dbt_cpu += (own_after.ru_utime + own_after.ru_stime) - (own.ru_utime + own.ru_stime) - self._scan_cpu
        results[label] = {
            "wall_seconds": round(wall, 1),
            "engine_cpu_seconds": round(engine, 1),
            "dbt_cpu_seconds": round(dbt_cpu, 1),
            "cpu_seconds": round(engine + dbt_cpu, 1),
            "peak_engine_rss_mb": round(max(self.peak_rss, sum(rss for _, rss in end.values())) / 2**20),
            "load_average": [round(value, 2) for value in os.getloadavg()],  # the machine's, not only the bench's
        }
        print(f"  {label}: {results[label]}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-memory", default="2g")
    # below Linux's ephemeral range (32768-60999), where any client's end of a connection can hold a port
    parser.add_argument("--port", type=int, default=27600, help="the first of the local cluster's 20 ports")
    parser.add_argument("--work", type=Path, help="write the lake and the cluster's state here (and keep them)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lake-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {"events": args.events, "accounts": args.accounts, "days": args.days, "workers": args.workers,
                     "worker_memory": args.worker_memory, "cores": os.cpu_count()}  # fmt: skip
    now = int(time.time()) // 86400 * 86400
    yesterday = now - 86400
    history_start = yesterday - args.days * 86400
    lake = LakeSettings(url=str(work / "lake"), base_port=args.port, workers=args.workers,
                        worker_memory=args.worker_memory)  # fmt: skip
    events_path = work / "lake" / "raw_product" / "events"
    results["uptime_at_start"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"Lake bench: {args.events:,} events, {args.accounts} accounts, {args.days} days, {args.workers} workers")
    cluster = LocalCluster(lake, work / "cluster")
    with throwaway_postgres() as pg:
        url = pg.url()
        published = pg.url("published")
        admin = psycopg2.connect(pg.url("postgres"))
        admin.autocommit = True  # CREATE DATABASE runs outside a transaction
        admin.cursor().execute("create database published")
        admin.close()
        ensure_tables(url, product.TABLES)
        started = time.perf_counter()
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            insert_events(cur, 1, args.events, args.accounts,
                          time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(history_start)), f"{args.days} days",
                          "1000000000.000")  # fmt: skip
        conn = psycopg2.connect(url)
        conn.autocommit = True
        conn.cursor().execute("vacuum analyze raw_product.events")
        conn.close()
        results["write_postgres_seconds"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        shutil.rmtree(work / "lake", ignore_errors=True)
        write_lake(events_path, 1, args.events, args.accounts, history_start, args.days * 86400, "1000000000.000")
        results["write_lake_seconds"] = round(time.perf_counter() - started, 1)
        results["lake_bytes"] = sum(f.stat().st_size for f in events_path.rglob("*.parquet"))
        postmaster = int((pg.pgdata / "postmaster.pid").read_text().split()[0])
        try:
            cluster.start()
        except ClusterError as error:
            raise SystemExit(f"error: {error} (--port)") from None
        try:
            spark_roots = [pid for pid in cluster.status().processes.values() if pid]
            pg_sampler, spark_sampler = Sampler([postmaster]), Sampler(spark_roots)
            # the publish reads the rollups on Spark and writes them into PostgreSQL: both engines count
            publish_sampler = Sampler([postmaster, *spark_roots])
            env = spark.dbt_environment(lake)

            def build_spark(extra: list[str]) -> None:
                with spark.client(lake) as client:
                    spark.register_events(client, lake)
                saved = {name: os.environ.get(name) for name in env}
                os.environ.update(env)
                try:
                    result = run_dbt(["build", "--target", "spark", *extra], target_path=work / "spark_target")
                finally:
                    for name, value in saved.items():
                        os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)
                if result.returncode != 0:
                    raise SystemExit("dbt on Spark failed:\n" + "\n".join(result.stdout.splitlines()[-30:]))

            def publish(full: bool) -> None:
                with spark.client(lake) as client:
                    publish_rollups(client, published, full=full)

            as_of = {"as_of": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
            with pg_sampler.measuring("postgres_full", results):
                dbt(url, ["build", "--select", "tag:spark", "--full-refresh"], work / "pg_target", as_of)
            with spark_sampler.measuring("spark_full", results):
                build_spark(["--full-refresh"])
            with publish_sampler.measuring("spark_publish_full", results):
                publish(True)
            per_day = args.events // args.days
            late = max(1, per_day // 50)
            first = args.events + 1
            with psycopg2.connect(url) as conn, conn.cursor() as cur:
                day = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(yesterday))
                two_days_earlier = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(yesterday - 2 * 86400))
                insert_events(cur, first, per_day, args.accounts, day, "1 day", "1000086400.000")
                insert_events(cur, first + per_day, late, args.accounts, two_days_earlier, "1 day", "1000086400.000")
                cur.execute("analyze raw_product.events")
            write_lake(events_path, first, per_day, args.accounts, yesterday, 86400, "1000086400.000")
            write_lake(
                events_path, first + per_day, late, args.accounts, yesterday - 2 * 86400, 86400, "1000086400.000"
            )
            results["nightly_new_events"], results["nightly_late_events"] = per_day, late
            with pg_sampler.measuring("postgres_nightly", results):
                dbt(url, ["build", "--select", "tag:spark"], work / "pg_target", as_of)
            with spark_sampler.measuring("spark_nightly", results):
                build_spark([])
            with publish_sampler.measuring("spark_publish_nightly", results):
                publish(False)
            with (
                psycopg2.connect(url) as a,
                a.cursor() as pg_cur,
                psycopg2.connect(published) as b,
                b.cursor() as lake_cur,
            ):
                for table in ("int_product_user_days", "int_product_account_event_days"):
                    sql = f"select count(*), sum(events) from intermediate.{table}"
                    pg_cur.execute(sql)
                    lake_cur.execute(sql)
                    results[f"rows_{table}"] = [list(map(int, pg_cur.fetchone())), list(map(int, lake_cur.fetchone()))]
        finally:
            cluster.stop()  # its state stays in --work; its JVMs and ports do not
    for engine in ("postgres", "spark"):
        full = results[f"{engine}_full"]
        results[f"{engine}_events_per_cpu_second"] = round(args.events / max(full["cpu_seconds"], 0.1))
    # the nightly of lake mode is the Spark build and the publish of the days it rewrote
    results["spark_nightly_with_publish"] = {
        key: round(results["spark_nightly"][key] + results["spark_publish_nightly"][key], 1)
        for key in ("wall_seconds", "cpu_seconds")
    }
    results["uptime"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    path = save(f"lake_build_{args.events}", results)
    print(f"results: {path}")
    for key, value in results.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
