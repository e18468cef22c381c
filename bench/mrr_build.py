"""Benchmark: the MRR engine at scale, against a naive customer x month date-spine model.

    python -m bench.mrr_build --customers 100000 --months 36 [--accounts 3]

Generates the account (seeded), writes raw_stripe in the dlt source's shape, then times:
  - a full `dbt build` (models and tests) of everything up to the MRR marts;
  - the nightly build after one more day of data, loaded as an incremental load leaves it (unchanged
    rows keep their synced_at): the MRR marts with everything upstream (the engine's incremental
    models) and their tests, on a copy of the warehouse; the whole project without the growth marts
    (issue 15), on another copy; then, on the warehouse, the whole project (every model and test) in one
    dbt invocation, as the nightly refresh runs it (the difference is what the growth marts add);
  - dashboard queries on the marts (a year of mrr_monthly; one customer's movements);
  - the predictions: a churn-model training, then the nightly forecast plus churn scoring;
  - a naive date-spine model of the same month-end MRR, and the ratio;
  - a rebuild from scratch (--full-refresh) at the same "today": every engine table and MRR mart
    must equal what the incremental builds left (digests).
With --accounts N the customers are N Stripe accounts of customers / N each (ids of their own, seeds
seed .. seed + N - 1), loaded side by side into raw_stripe (README "Several Stripe accounts").
Results go to bench/results/mrr_build.json (mrr_build_<N>_accounts.json with --accounts).
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path

import psycopg2

from bench.common import (
    account_parser,
    clone_database,
    dbt,
    drop_database,
    generated_account,
    generated_store,
    hook_seconds,
    load_raw_direct,
    nodes_seconds,
    save,
    slowest_nodes,
    sum_of_nodes,
    throwaway_postgres,
    timed,
)
from orchestration.defs.churn import write_churn_model
from orchestration.defs.forecast import write_forecast

NAIVE_SPINE = """
-- the usual hand-written approach: a row per customer and month, MRR from the lines whose
-- service period covers the month's last day
create table bench_naive_customer_mrr_monthly as
with months as (
    select generate_series(date_trunc('month', min(period_start_at)), date_trunc('month', now()),
                           interval '1 month')::date as month
    from intermediate.int_invoice_lines_classified
),
customers as (
    select distinct customer_id from intermediate.int_invoice_lines_classified where line_kind = 'recurring'
),
spine as (
    select customers.customer_id, months.month,
           (months.month + interval '1 month' - interval '1 second') as month_end
    from customers cross join months
)
select spine.customer_id, spine.month, coalesce(sum(lines.mrr_local), 0) as mrr
from spine
left join intermediate.int_invoice_lines_classified as lines
    on lines.customer_id = spine.customer_id
    and lines.line_kind = 'recurring'
    and lines.invoice_status = 'paid'
    and lines.period_start_at <= spine.month_end
    and lines.period_end_at > spine.month_end
group by spine.customer_id, spine.month
"""


# the growth marts of issue 15 with their intermediate models and tests
GROWTH_MARTS = (
    "int_customer_segments_monthly+ int_customer_journey+ renewals cac_by_channel saas_efficiency stg_finance__pnl"
)
# issue 27's models and their tests: what churn causes, failed payments and expiring cards add to a build
FINANCE_NODES = (
    "int_customer_churn_causes",
    "churn_causes_add_up",
    "every_churn_has_a_cause",
    "int_failed_invoices",
    "payment_recovery",
    "cards_expiring",
)
MRR_MARTS = "+mrr_monthly +mrr_by_plan +customer_mrr_current mrr_movements customer_mrr_monthly"
COMPARED = (
    "intermediate.int_subscription_mrr_points",
    "intermediate.int_subscription_prices_mrr_changes",
    "intermediate.int_customer_mrr_movements",
    "intermediate.int_customer_mrr_monthly",
    "intermediate.int_customer_price_mrr_monthly",
    "intermediate.int_customer_revenue",
    "marts.mrr_monthly",
    "marts.mrr_by_plan",
    "marts.customer_mrr_current",
    "marts.customer_lifetime",
    "marts.saas_kpis_monthly",
)


def digests(url: str) -> dict[str, tuple]:
    """Row count and an order-independent digest of each compared table (engine_batch_at left out)."""
    row = "(to_jsonb(t) - 'engine_batch_at')::text"
    out = {}
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for table in COMPARED:
            cur.execute(
                f"select count(*), md5(coalesce(string_agg(md5({row}), '' order by md5({row})), '')) from {table} t"
            )
            out[table] = cur.fetchone()
    return out


def query_ms(url: str, sql: str, params=None, repeat: int = 20) -> float:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        cur.fetchall()
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            cur.execute(sql, params)
            cur.fetchall()
            times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = account_parser(__doc__)
    parser.add_argument("--accounts", type=int, default=1, help="Stripe accounts the customers are split over")
    args = parser.parse_args()
    if args.accounts < 1:
        parser.error("--accounts must be at least 1")
    results: dict = {"customers": args.customers, "months": args.months, "accounts": args.accounts}
    name_of_results = "mrr_build" if args.accounts == 1 else f"mrr_build_{args.accounts}_accounts"
    print(f"MRR build benchmark: {args.customers} customers, {args.months} months, {args.accounts} account(s)")
    if args.accounts == 1:
        store, now, work = generated_account(args, "mrr-bench-", results)
        stores = {"default": store}
    else:
        now = int(time.time()) // 86400 * 86400
        work = args.work or Path(tempfile.mkdtemp(prefix="mrr-bench-"))
        work.mkdir(parents=True, exist_ok=True)
        share = args.customers // args.accounts
        with timed("generate_seconds", results):
            stores = {
                f"a{i}": generated_store(work, share, args.months, args.seed + i, now, id_prefix=f"a{i}")
                for i in range(args.accounts)
            }
    with throwaway_postgres() as pg:
        url = pg.url()
        with timed("load_raw_seconds", results):
            # the account as it was yesterday: what was created in the last day comes with the nightly load
            results["rows"] = {}
            for i, (name, store) in enumerate(stores.items()):
                rows = load_raw_direct(store, url, now - 86400, created_before=now - 86400, account=name, add=i > 0)
                for table, count in rows.items():
                    results["rows"][table] = results["rows"].get(table, 0) + count
        print(f"  rows: {results['rows']}")
        with timed("dbt_full_build_seconds", results):
            dbt(
                url,
                ["build", "--exclude", "resource_type:snapshot"],
                work / "target",
                {"as_of": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 86400))},
            )
        results["full_build_finance_nodes_seconds"] = nodes_seconds(work / "target", FINANCE_NODES)
        # one more day: what an incremental load brings (the last day's new objects), then rebuild
        with timed("nightly_load_raw_seconds", results):
            for name, store in stores.items():
                load_raw_direct(store, url, now, merge=True, account=name)
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
            cur.execute(
                "select (select count(*) from raw_stripe.invoices where synced_at >= %s), "
                "(select count(*) from raw_stripe.invoice_lines where synced_at >= %s)",
                (stamp, stamp),
            )
            results["nightly_changed_invoices"], results["nightly_changed_invoice_lines"] = cur.fetchone()
        today = {"as_of": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
        # the nightly run parses the project as the night before (same arguments: dagster-dbt reuses the
        # partial parse); here "today" is a var that changed, which costs a full re-parse: not timed
        dbt(url, ["parse"], work / "target", today)
        # the MRR marts alone (everything upstream of them), on a copy of the warehouse at the same point
        mrr_url = clone_database(pg, url, "bench_nightly_mrr_marts")
        dbt(mrr_url, ["parse"], work / "target_mrr", today)
        with timed("dbt_nightly_mrr_marts_seconds", results):
            dbt(mrr_url, ["build", "--select", MRR_MARTS], work / "target_mrr", today)
        results["nightly_mrr_marts_slowest_nodes"] = slowest_nodes(work / "target_mrr")
        results["nightly_mrr_marts_publish_seconds"] = hook_seconds(work / "target_mrr")
        drop_database(pg, "bench_nightly_mrr_marts")
        # the same nightly without the growth marts (issue 15), on a copy: what they add to it
        rest_url = clone_database(pg, url, "bench_nightly_without_growth")
        dbt(rest_url, ["parse"], work / "target_rest", today)
        with timed("dbt_nightly_without_growth_seconds", results):
            dbt(
                rest_url,
                ["build", "--exclude", "resource_type:snapshot", *GROWTH_MARTS.split()],
                work / "target_rest",
                today,
            )
        drop_database(pg, "bench_nightly_without_growth")
        # the nightly build as the refresh runs it: one `dbt build` of every model and test
        with timed("dbt_nightly_build_seconds", results):
            dbt(url, ["build", "--exclude", "resource_type:snapshot"], work / "target", today)
        results["nightly_build_slowest_nodes"] = slowest_nodes(work / "target", count=15)
        results["nightly_build_finance_nodes_seconds"] = nodes_seconds(work / "target", FINANCE_NODES)
        results["nightly_build_publish_seconds"] = hook_seconds(work / "target")
        results["nightly_build_sum_of_node_seconds"] = sum_of_nodes(work / "target")
        results["nightly_growth_marts_add_seconds"] = round(
            results["dbt_nightly_build_seconds"] - results["dbt_nightly_without_growth_seconds"], 3
        )
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute(
                "select count(subscription_id), count(distinct customer_id) from intermediate.int_mrr_engine_batches "
                "where batch_at = (select max(batch_at) from intermediate.int_mrr_engine_batches)"
            )
            results["nightly_recomputed_subscriptions"], results["nightly_recomputed_customers"] = cur.fetchone()
        incremental = digests(url)
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            cur.execute("select customer_id from marts.mrr_movements group by 1 order by count(*) desc limit 1")
            busiest = cur.fetchone()[0]
            cur.execute("select count(*) from marts.mrr_movements")
            results["mrr_movements_rows"] = cur.fetchone()[0]
            cur.execute("select count(*) from marts.customer_mrr_monthly")
            results["customer_mrr_monthly_rows"] = cur.fetchone()[0]
        results["query_year_of_mrr_monthly_ms"] = query_ms(
            url,
            "select * from marts.mrr_monthly where month >= date_trunc('month', now()) - interval '12 months' "
            "order by month",
        )
        results["query_one_customer_movements_ms"] = query_ms(
            url, "select * from marts.mrr_movements where customer_id = %s order by movement_date", (busiest,)
        )
        # the predictions after the nightly build (METRICS.md "Looking ahead"): a churn model trained
        # (as on the first night of a month), then the nightly forecast plus scoring with that model
        predictions_log = logging.getLogger("bench.predictions")
        with timed("churn_training_seconds", results):
            churn, evaluation = write_churn_model(url, predictions_log, train=True)
        results["churn_training"] = {**churn, **evaluation}
        with timed("nightly_forecast_and_scoring_seconds", results):
            forecast_metadata, _ = write_forecast(url, predictions_log)
            churn, _ = write_churn_model(url, predictions_log, train=False)
        results["nightly_forecast_seconds"] = forecast_metadata["seconds"]
        results["nightly_scoring_seconds"] = churn.get("scoring_seconds")
        results["nightly_scored_customers"] = churn.get("scored_customers")
        with timed("naive_date_spine_seconds", results):
            with psycopg2.connect(url) as conn, conn.cursor() as cur:
                cur.execute("drop table if exists bench_naive_customer_mrr_monthly")
                cur.execute(NAIVE_SPINE)
        # the engine's models from classified lines to month-end MRR per customer, from scratch
        with timed("engine_mrr_models_seconds", results):
            dbt(
                url,
                ["run", "--full-refresh", "--select", "int_subscription_mrr_points+,+int_customer_mrr_monthly"],
                work / "target",
                today,
            )
        results["naive_over_engine_ratio"] = round(
            results["naive_date_spine_seconds"] / results["engine_mrr_models_seconds"], 2
        )
        # the incremental builds against a rebuild from scratch at the same "today"
        with timed("dbt_full_refresh_seconds", results):
            dbt(url, ["build", "--full-refresh", "--exclude", "resource_type:snapshot"], work / "target", today)
        rebuilt = digests(url)
        results["incremental_differs_from_rebuild"] = [t for t in COMPARED if incremental[t] != rebuilt[t]]
        if results["incremental_differs_from_rebuild"]:
            save(name_of_results, results)
            raise SystemExit(f"incremental build differs from a rebuild: {results['incremental_differs_from_rebuild']}")
    path = save(name_of_results, results)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
