"""Benchmark: the product-engagement models at 10 million events, full and nightly incremental.

    python -m bench.product_build [--events 10000000] [--accounts 5000] [--days 365]

A generated Stripe account (one product account per customer, mapped by tenant_id) is loaded
into raw_stripe and built once; then `--events` product events spread over `--days` days are
written into raw_product.events in the shape the dlt source gives it (with its indexes), and:
  - a full build (models and tests) of everything downstream of the product sources;
  - a nightly build after one more day of events plus late events for two days earlier, loaded
    as a new dlt load: the incremental rollups recompute only the days those rows touch.
Target: the nightly build under 30 s on 2 cores. Results: bench/results/product_build.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import psycopg2

from bench.common import dbt, generated_store, load_raw_direct, save, slowest_nodes, throwaway_postgres, timed
from ingestion import product
from ingestion.raw_tables import ensure_tables

PRODUCT_MODELS = ["stg_product__events+", "stg_product__account_mapping+"]
EVENT_NAMES = (
    "array['login', 'login', 'dashboard_viewed', 'report_created', 'export_downloaded', "
    "'comment_added', 'alert_configured', 'invite_sent', 'integration_connected', 'dashboard_viewed']"
)


def insert_events(cur, first: int, count: int, accounts: int, start: str, span: str, load_id: str) -> None:
    """`count` events numbered from `first`, evenly spread from `start` over `span`, time-ordered."""
    cur.execute(
        f"""
        insert into raw_product.events
            (event_id, account_id, user_id, event_name, properties, occurred_at, _dlt_load_id, _dlt_id)
        select
            'evt_' || g,
            -- sessions of 8 consecutive events by one user of one account
            'acct_' || lpad((1 + ((g / 8) * 7919) %% %(accounts)s)::text, 6, '0'),
            'user_' || (((g / 8) * 7919) %% %(accounts)s) || '_' || ((g / 8) %% 7),
            ({EVENT_NAMES})[1 + (g * 104729) %% 10],
            case when (g / 8) %% 7 = 0 then '{{"role": "admin"}}'::jsonb end,
            %(start)s::timestamptz + ((g - %(first)s)::float8 / %(count)s) * %(span)s::interval,
            %(load_id)s,
            'bench_' || g
        from generate_series(%(first)s::bigint, %(first)s::bigint + %(count)s - 1) as g
        """,
        {"accounts": accounts, "first": first, "count": count, "start": start, "span": span, "load_id": load_id},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--accounts", type=int, default=5000)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    results: dict = {"events": args.events, "accounts": args.accounts, "days": args.days}
    now = int(time.time()) // 86400 * 86400
    day_before = now - 86400
    as_of = {"as_of": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(day_before))}
    work = Path(tempfile.mkdtemp(prefix="product-bench-"))
    print(f"Product build benchmark: {args.events:,} events, {args.accounts} accounts, {args.days} days")
    store = generated_store(work, args.accounts, 12, 1, day_before)
    with throwaway_postgres() as pg:
        url = pg.url()
        load_raw_direct(store, url, day_before)
        ensure_tables(url, product.TABLES)
        with timed("stripe_marts_build_seconds", results):
            dbt(url, ["build", "--exclude", "resource_type:snapshot"], work / "target", as_of)
        history_start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(day_before - args.days * 86400))
        with timed("write_raw_events_seconds", results), psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("truncate raw_product.events")
            insert_events(cur, 1, args.events, args.accounts, history_start, f"{args.days} days", "1000000000.000")
        conn = psycopg2.connect(url)
        conn.autocommit = True  # VACUUM runs outside a transaction
        conn.cursor().execute("vacuum analyze raw_product.events")
        conn.close()
        with timed("full_build_seconds", results):
            dbt(url, ["build", "--select", *PRODUCT_MODELS], work / "target", as_of)
        per_day = args.events // args.days
        late = max(1, per_day // 50)
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            yesterday = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(day_before))
            two_days_earlier = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(day_before - 2 * 86400))
            insert_events(cur, args.events + 1, per_day, args.accounts, yesterday, "1 day", "1000086400.000")
            insert_events(
                cur, args.events + per_day + 1, late, args.accounts, two_days_earlier, "1 day", "1000086400.000"
            )
            cur.execute("analyze raw_product.events")
        results["nightly_new_events"] = per_day
        results["nightly_late_events"] = late
        with timed("nightly_incremental_build_seconds", results):
            dbt(
                url,
                ["build", "--select", *PRODUCT_MODELS],
                work / "target",
                {"as_of": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))},
            )
        results["nightly_slowest_nodes"] = slowest_nodes(work / "target", 8)
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            for table in (
                "intermediate.int_product_user_days",
                "intermediate.int_product_account_event_days",
                "marts.account_engagement_weekly",
                "marts.account_health",
                "marts.churn_risk",
            ):
                cur.execute(f"select count(*) from {table}")
                results[f"rows_{table.split('.')[1]}"] = cur.fetchone()[0]
    path = save("product_build", results)
    print(f"results: {path}")
    for key, value in results.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
