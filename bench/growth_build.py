"""What the growth marts (renewals, segments, CAC per channel, efficiency, journey; issue 15) add to
the nightly build: a full build of a generated account, then the growth models and their tests
built again on their own, three times (the median is what they add to a nightly build), with the
slowest of them. Run on an idle machine: `python -m bench.growth_build --customers 100000 --months 36`.
"""

from __future__ import annotations

import statistics
import time

import psycopg2

from bench.common import (
    account_parser,
    dbt,
    generated_account,
    load_raw_direct,
    save,
    slowest_nodes,
    throwaway_postgres,
    timed,
)

GROWTH = "path:models/intermediate/growth path:models/marts/growth"


def main() -> None:
    args = account_parser(__doc__).parse_args()
    results: dict = {"customers": args.customers, "months": args.months}
    print(f"Growth marts benchmark: {args.customers} customers, {args.months} months")
    store, now, work = generated_account(args, "growth-bench-", results)
    today = {"as_of": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}
    with throwaway_postgres() as pg:
        url = pg.url()
        with timed("load_raw_seconds", results):
            results["rows"] = load_raw_direct(store, url, now)
        with timed("dbt_full_build_seconds", results):
            dbt(url, ["build", "--exclude", "resource_type:snapshot"], work / "target", today)
        runs = []
        for run in range(3):
            with timed(f"growth_build_{run + 1}_seconds", results):
                dbt(url, ["build", "--select", GROWTH], work / "target", today)
            runs.append(results[f"growth_build_{run + 1}_seconds"])
        results["growth_build_median_seconds"] = statistics.median(runs)
        results["growth_slowest_nodes"] = slowest_nodes(work / "target")
        with psycopg2.connect(url) as conn, conn.cursor() as cur:
            for table in ("intermediate.int_customer_segments_monthly", "marts.mrr_by_segment", "marts.renewals"):
                cur.execute(f"select count(*) from {table}")
                results[f"{table}_rows"] = cur.fetchone()[0]
            cur.execute("select customer_id from marts.mrr_movements group by 1 order by count(*) desc limit 1")
            busiest = cur.fetchone()[0]
            started = time.perf_counter()
            cur.execute("select * from marts.customer_timeline where customer_id = %s order by event_order", (busiest,))
            cur.fetchall()
            results["query_one_customer_timeline_ms"] = round((time.perf_counter() - started) * 1000, 1)
    print(f"  slowest: {results['growth_slowest_nodes']}")
    print(f"  one customer's timeline: {results['query_one_customer_timeline_ms']} ms")
    print(f"results: {save('growth_build', results)}")


if __name__ == "__main__":
    main()
