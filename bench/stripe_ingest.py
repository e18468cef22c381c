"""Benchmark: the Stripe load through HTTP and dlt, against the local Stripe-protocol server.

    python -m bench.stripe_ingest --invoices 100000 [--latency-ms 0] [--max-rps 1000]

Generates an account with about that many invoices, serves it on 127.0.0.1 (optionally with a
per-request latency, to see what concurrency buys against a remote API), runs a full load into a
throwaway PostgreSQL, and reports objects/s and requests/s. Results: bench/results/stripe_ingest.json.

The server runs in a process of its own, as Stripe does: sharing the loader's process, it would share
its GIL, and the benchmark would measure the server as much as the load.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import dlt

from bench.common import generated_store, save, throwaway_postgres
from ingestion.stripe import stripe_source
from saas_metrics.demo.server import StripeProtocolServer
from saas_metrics.demo.store import Store

INVOICES_PER_CUSTOMER = 7.4  # the generator's average over 24 months
API_KEY = "sk_test_bench"


def _serve(store_path: str, now: int, latency_seconds: float, conn) -> None:
    """The Stripe-protocol server's process: serve until told to stop, then report the requests served."""
    with StripeProtocolServer(Store(store_path), api_key=API_KEY, now=now, latency_seconds=latency_seconds) as server:
        conn.send(server.url)
        conn.recv()
        conn.send(server.stats.requests)


@contextmanager
def server_process(store_path: str, now: int, latency_seconds: float):
    """Yields (url, requests) where requests() is the count served so far (asked once, at the end)."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_serve, args=(store_path, now, latency_seconds, theirs), daemon=True)
    process.start()
    try:
        url = ours.recv()

        def requests() -> int:
            ours.send("stop")
            return ours.recv()

        yield url, requests
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--max-rps", type=float, default=1000.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    customers = max(1, int(args.invoices / INVOICES_PER_CUSTOMER))
    now = int(time.time()) // 86400 * 86400
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    store = generated_store(work, customers, 24, 1, now)
    objects = {kind: store.count(kind) for kind in ("customer", "subscription", "invoice", "line_item", "event")}
    print(f"Stripe load benchmark: {objects}")
    with (
        throwaway_postgres() as pg,
        server_process(str(store.path), now, args.latency_ms / 1000) as (server_url, served),
    ):
        pipeline = dlt.pipeline(
            "bench_stripe",
            destination=dlt.destinations.postgres(pg.url()),
            dataset_name="raw_stripe",
            pipelines_dir=str(work / "dlt"),
        )
        started = time.perf_counter()
        pipeline.extract(stripe_source(api_key=API_KEY, api_base=server_url, max_rps=args.max_rps))
        extracted = time.perf_counter()
        pipeline.normalize()
        normalized = time.perf_counter()
        pipeline.load()
        done = time.perf_counter()
        requests = served()
    total_objects = sum(objects.values())
    results = {
        "invoices": objects["invoice"],
        "objects": objects,
        "latency_ms": args.latency_ms,
        "max_rps": args.max_rps,
        "requests": requests,
        "extract_seconds": round(extracted - started, 2),
        "normalize_seconds": round(normalized - extracted, 2),
        "load_seconds": round(done - normalized, 2),
        "total_seconds": round(done - started, 2),
        "objects_per_second": round(total_objects / (done - started)),
        "extract_objects_per_second": round(total_objects / (extracted - started)),
        "requests_per_second_during_extract": round(requests / (extracted - started), 1),
    }
    for key, value in results.items():
        print(f"  {key}: {value}")
    print(f"results: {save('stripe_ingest' + (f'_latency{int(args.latency_ms)}' if args.latency_ms else ''), results)}")


if __name__ == "__main__":
    main()
