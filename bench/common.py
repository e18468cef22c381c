"""Shared pieces of the benchmarks: a throwaway PostgreSQL, a generated account, timing."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import socket
import tempfile
import time
from pathlib import Path

import psycopg2

from ingestion.stripe import settings as stripe_settings
from saas_metrics.config import parse_database_url
from saas_metrics.dbt_cli import run_dbt
from saas_metrics.demo.account import generate
from saas_metrics.demo.store import Store
from saas_metrics.postgres import EmbeddedPostgres

RESULTS = Path(__file__).parent / "results"
DAY = 86400


def account_parser(
    doc: str, work_help: str = "keep generated accounts here and reuse them (default: a temp dir)"
) -> argparse.ArgumentParser:
    """The arguments of a benchmark of a generated account: its size, seed and work folder."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--work", type=Path, help=work_help)
    return parser


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def throwaway_postgres():
    with tempfile.TemporaryDirectory(prefix="saas-metrics-bench-") as home:
        pg = EmbeddedPostgres(Path(home) / "pgdata", free_port())
        pg.start()
        try:
            yield pg
        finally:
            pg.destroy()


@contextlib.contextmanager
def timed(label: str, results: dict):
    started = time.perf_counter()
    yield
    results[label] = round(time.perf_counter() - started, 3)
    print(f"  {label}: {results[label]:.2f}s", flush=True)


def generated_store(
    folder: Path, customers: int, months: int, seed: int = 1, now: int | None = None, id_prefix: str = ""
) -> Store:
    """A generated account (reused when `folder` has it); `id_prefix` makes its ids its own (another account)."""
    path = folder / f"bench-{id_prefix}{customers}-{months}-{seed}-{now}.sqlite"
    if path.exists():
        return Store(path)
    tmp = path.with_suffix(".partial")
    tmp.unlink(missing_ok=True)
    store = Store(tmp)
    generate(store, customers=customers, months=months, seed=seed, now=now, progress_every=10**9, id_prefix=id_prefix)
    store.close()
    tmp.rename(path)
    return Store(path)


def generated_account(args: argparse.Namespace, prefix: str, results: dict) -> tuple[Store, int, Path]:
    """The account of `account_parser`'s arguments as of today 00:00 UTC (the same account all day), generated
    in --work (reused when it is there) or a new temporary folder; returns it, that "now" and the folder."""
    now = int(time.time()) // DAY * DAY
    work = args.work or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    with timed("generate_seconds", results):
        store = generated_store(work, args.customers, args.months, args.seed, now)
    return store, now, work


TABLE_OF = {
    "customer": "customers",
    "product": "products",
    "price": "prices",
    "coupon": "coupons",
    "subscription": "subscriptions",
    "subscription_item": "subscription_items",
    "invoice": "invoices",
    "line_item": "invoice_lines",
    "credit_note": "credit_notes",
    "event": "events",
}


def load_raw_direct(
    store: Store,
    database_url: str,
    synced_at: int,
    merge: bool = False,
    created_before: int | None = None,
    account: str = "default",
    add: bool = False,
) -> dict[str, int]:
    """Write raw_stripe as the dlt source would (same tables, columns and row shapes), with COPY.

    Used to benchmark dbt at a scale where loading over HTTP would dominate the run. With `merge`, the
    store is a later state of the account already loaded, and the result is what an incremental load
    leaves: rows that did not change keep their synced_at, changed and new ones (and every line of a
    changed invoice) get `synced_at`. With `created_before`, objects created at or after it (with the
    lines and items of such invoices and subscriptions) are left out: the account as it was then. Rows carry
    `account` (README "Several Stripe accounts"); with `add`, raw_stripe keeps what it holds (another account's
    rows) and this account's rows are added.
    """
    from ingestion import finance, product, stripe
    from ingestion.raw_tables import ensure_tables

    counts = {}
    if not merge and not add:
        with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
            cur.execute("drop schema if exists raw_stripe cascade")
    for tables in (stripe.TABLES, finance.TABLES, product.TABLES):
        ensure_tables(database_url, tables)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(synced_at))
    left_out: set[str] = set()
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        for kind, table in TABLE_OF.items():
            keys = stripe_settings.RAW_TABLES[table]
            buffer = io.StringIO()
            n = 0
            for obj in store.iter_type(kind):
                if created_before is not None and (
                    (obj.get("created") or 0) >= created_before
                    or obj.get("invoice") in left_out
                    or (kind == "subscription_item" and obj.get("subscription") in left_out)
                ):
                    left_out.add(obj["id"])
                    continue
                data = {k: v for k, v in obj.items() if k not in ("lines", "items")}
                key_values = []
                for key in keys:
                    if key == "customer_id":
                        key_values.append(obj.get("customer"))
                    elif key == "status":
                        key_values.append(obj.get("status"))
                    elif key == "subscription_id":
                        parent = ((obj.get("parent") or {}).get("subscription_details") or {}).get("subscription")
                        key_values.append(obj.get("subscription") or parent)
                    elif key == "invoice_id":
                        key_values.append(obj.get("invoice"))
                    elif key == "type":
                        key_values.append(obj.get("type"))
                created = obj.get("created")
                created_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)) if created else None
                row = [obj["id"], account, created_text, json.dumps(data), stamp, *key_values, "bench"]
                row.append(f"{account}.{kind}{n}")
                buffer.write("\t".join(_copy_text(v) for v in row) + "\n")
                n += 1
            buffer.seek(0)
            columns = ["id", "account", "created", "data", "synced_at", *keys, "_dlt_load_id", "_dlt_id"]
            if not merge:
                cur.copy_expert(f"copy raw_stripe.{table} ({', '.join(columns)}) from stdin", buffer)
            else:
                _merge_copy(cur, table, columns, buffer, stamp, account)
            counts[table] = n
        cur.execute("analyze")
    return counts


PARENT_OF = {"invoice_lines": ("invoices", "invoice_id"), "subscription_items": ("subscriptions", "subscription_id")}


def _merge_copy(cur, table: str, columns: list[str], buffer: io.StringIO, stamp: str, account: str) -> None:
    """Replace the rows of `account` in raw_stripe.<table> with those in `buffer`, keeping the old synced_at of
    unchanged rows."""
    cur.execute(f"create temp table next_rows (like raw_stripe.{table})")
    cur.copy_expert(f"copy next_rows ({', '.join(columns)}) from stdin", buffer)
    unchanged_parent = ""
    if table in PARENT_OF:
        parent, key = PARENT_OF[table]
        unchanged_parent = (
            f" and next_rows.{key} in (select id from raw_stripe.{parent}"
            f" where account = '{account}' and synced_at < '{stamp}')"
        )
    cur.execute(
        f"update next_rows set synced_at = old.synced_at from raw_stripe.{table} as old "
        f"where old.account = next_rows.account and old.id = next_rows.id and old.data = next_rows.data"
        f"{unchanged_parent}"
    )
    cur.execute(f"delete from raw_stripe.{table} where account = '{account}'")
    cur.execute(f"insert into raw_stripe.{table} select * from next_rows")
    cur.execute("drop table next_rows")


def _copy_text(value) -> str:
    if value is None:
        return r"\N"
    return str(value).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def dbt(database_url: str, args: list[str], target: Path, vars_: dict | None = None) -> str:
    if args and args[0] == "build":  # as the nightly: the dbt unit tests are not part of it
        args = [*args, "--exclude-resource-type", "unit_test"]
    result = run_dbt(args, database_url, target, vars_)
    if result.returncode != 0:
        raise SystemExit("dbt failed:\n" + "\n".join(result.stdout.splitlines()[-30:]))
    return result.stdout


def slowest_nodes(target: Path, count: int = 10) -> dict[str, float]:
    """The slowest nodes of the last dbt invocation that wrote `target`, in seconds."""
    run_results = json.loads((target / "run_results.json").read_text())
    slowest = sorted(run_results["results"], key=lambda r: -r["execution_time"])[:count]
    return {r["unique_id"].split(".", 2)[-1]: round(r["execution_time"], 2) for r in slowest}


def nodes_seconds(target: Path, names: tuple[str, ...]) -> dict[str, float]:
    """Seconds of the nodes of the last dbt invocation that wrote `target` whose name (or, for a test, the
    model it tests) is one of `names`, and their "total"."""
    run_results = json.loads((target / "run_results.json").read_text())
    picked = {
        r["unique_id"].split(".", 2)[-1]: round(r["execution_time"], 2)
        for r in run_results["results"]
        if any(name in r["unique_id"] for name in names)
    }
    return {**picked, "total": round(sum(picked.values()), 2)}


def sum_of_nodes(target: Path) -> float:
    """Seconds of all nodes of the last dbt invocation that wrote `target`, added up (threads overlap them)."""
    run_results = json.loads((target / "run_results.json").read_text())
    return round(sum(r["execution_time"] for r in run_results["results"]), 2)


def clone_database(pg: EmbeddedPostgres, url: str, name: str) -> str:
    """A copy of the database of `url` (CREATE DATABASE ... TEMPLATE), its other sessions ended first."""
    source = parse_database_url(url).dbname
    conn = psycopg2.connect(pg.url("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (source,))
        cur.execute(f'drop database if exists "{name}"')
        cur.execute(f'create database "{name}" template "{source}"')
    conn.close()
    return pg.url(name)


def drop_database(pg: EmbeddedPostgres, name: str) -> None:
    conn = psycopg2.connect(pg.url("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'drop database if exists "{name}" with (force)')
    conn.close()


def hook_seconds(target: Path) -> float:
    """Seconds the last dbt invocation that wrote `target` spent in its on-run-end hooks (publishing the marts)."""
    run_results = json.loads((target / "run_results.json").read_text())
    return round(sum(r["execution_time"] for r in run_results["results"] if "on-run-end" in r["unique_id"]), 3)


def save(name: str, results: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=2))
    return path
