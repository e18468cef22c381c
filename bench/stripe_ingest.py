"""Benchmark: the Stripe load through HTTP and dlt, against the local Stripe-protocol server.

    python -m bench.stripe_ingest --customers 20000 [--max-rps 100] [--latency-ms 0] [--work DIR]

Generates an account (or reuses the one in --work), serves it on 127.0.0.1 (optionally with a
per-request latency, to see what concurrency buys against a remote API), runs a first (full) load
into a throwaway PostgreSQL, and reports objects/s, requests/s and the share of the request budget
(`requests / (seconds x max_rps)`) the load used: during the fetch (dlt's extract step, which makes
every request) and over the whole load (extract, normalize, load). Per resource: objects, requests
and seconds. The client's own CPU per request (this process) and the server's (its process) say
which side limits the load. Results: bench/results/stripe_ingest.json (with the command).

The server runs in a process of its own, as Stripe does: sharing the loader's process, it would share
its GIL, and the benchmark would measure the server as much as the load.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shlex
import sys
import tempfile
import time
from bisect import bisect_right
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import dlt

from bench.common import generated_store, save, throwaway_postgres
from ingestion.stripe import settings as stripe_settings
from ingestion.stripe import stripe_source
from ingestion.stripe.helpers import resource_of_path
from saas_metrics.demo.server import StripeProtocolServer
from saas_metrics.demo.store import Store

INVOICES_PER_CUSTOMER = 7.4  # the generator's average over 24 months
API_KEY = "sk_test_bench"


def _query_pairs(params: dict) -> list[tuple[str, str]]:
    """Params as the stripe library puts them in a query string (`expand[0]=...`, `created[gte]=...`)."""
    pairs = []
    for key, value in params.items():
        if isinstance(value, list):
            pairs += [(f"{key}[{i}]", str(v)) for i, v in enumerate(value)]
        elif isinstance(value, dict):
            pairs += [(f"{key}[{k}]", str(v)) for k, v in value.items()]
        else:
            pairs.append((key, str(value)))
    return pairs


PAGING = ("limit", "starting_after", "created[gte]", "created[lt]")


def _list_key(path: str, pairs: list[tuple[str, str]]) -> tuple:
    return (path, tuple(sorted((k, v) for k, v in pairs if k not in PAGING)))


class PrecomputedServer(StripeProtocolServer):
    """The Stripe-protocol server with the pages of the source's lists rendered before the load starts.

    The benchmark measures the client: a server that renders each page while the load waits (a SQLite
    query per invoice for its lines, JSON encoding) spends more CPU per request than the client, on a
    machine of two cores. Pages of the lists the source asks for (settings.LISTS, with their params) are
    answered from the objects rendered and encoded once, through the server's own list code (the same
    order, filters, expansions and embedded lines); any other request (an invoice's lines past the
    tenth, a retrieve) goes to the server as usual.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lists: dict[tuple, tuple[list[bytes], dict[str, int], list[int]]] = {}
        self.precomputed = 0
        lists = [(path, params) for path, params, _ in stripe_settings.LISTS.values()] + [("/v1/events", {})]
        for path, params in lists:
            objects: list[bytes] = []
            position: dict[str, int] = {}
            negated_created: list[int] = []  # ascending, for bisect (the list is newest first)
            pairs = _query_pairs(params)
            after = None
            while True:
                page_pairs = [*pairs, ("limit", "100")] + ([("starting_after", after)] if after else [])
                status, body = self.handle(path, urlencode(page_pairs), f"Bearer {self.api_key}")
                if status != 200:
                    break
                for obj in body["data"]:
                    position[obj["id"]] = len(objects)
                    objects.append(json.dumps(obj, separators=(",", ":")).encode())
                    negated_created.append(-obj["created"])
                if not body["has_more"] or not body["data"]:
                    break
                after = body["data"][-1]["id"]
            self.lists[_list_key(path, pairs)] = (objects, position, negated_created)

    def handle(self, path: str, query: str, auth: str | None):
        pairs = parse_qsl(query, keep_blank_values=True)
        found = self.lists.get(_list_key(path, pairs)) if auth == f"Bearer {self.api_key}" else None
        if found is None:
            return super().handle(path, query, auth)
        objects, position, negated_created = found
        flat = dict(pairs)
        limit = int(flat.get("limit", "10"))
        after = flat.get("starting_after")
        # created in [gte, lt): from the first object older than lt to the first older than gte
        start = bisect_right(negated_created, -int(flat["created[lt]"])) if "created[lt]" in flat else 0
        end = bisect_right(negated_created, -int(flat["created[gte]"])) if "created[gte]" in flat else len(objects)
        if after:
            start = max(start, position[after] + 1)
        page = objects[start : min(start + limit, end)]
        has_more = b"true" if start + limit < end else b"false"
        with self.stats.lock:
            self.precomputed += 1
        return 200, b'{"object":"list","url":"%s","has_more":%s,"data":[%s]}' % (
            path.encode(),
            has_more,
            b",".join(page),
        )


def _serve(store_path: str, now: int, latency_seconds: float, precompute: bool, conn) -> None:
    """The Stripe-protocol server's process: serve until told to stop, then report what it served."""
    server_class = PrecomputedServer if precompute else StripeProtocolServer
    cpu_before = time.process_time()
    with server_class(Store(store_path), api_key=API_KEY, now=now, latency_seconds=latency_seconds) as server:
        cpu_ready = time.process_time()
        conn.send(server.url)
        conn.recv()
        stats = server.stats
        conn.send(
            {
                "requests": stats.requests,
                "by_path": dict(stats.by_path),
                "precomputed_pages_served": getattr(server, "precomputed", None),
                "cpu": time.process_time() - cpu_ready,
                "precompute_cpu": cpu_ready - cpu_before,
            }
        )


@contextmanager
def server_process(store_path: str, now: int, latency_seconds: float, precompute: bool = True):
    """Yields (url, stats) where stats() stops the server and returns what it served and its CPU seconds."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_serve, args=(store_path, now, latency_seconds, precompute, theirs), daemon=True)
    process.start()
    try:
        url = ours.recv()

        def stats() -> dict:
            ours.send("stop")
            return ours.recv()

        yield url, stats
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()


class ResourceStats(logging.Handler):
    """Collects what the source reports when a resource is done (objects, requests, seconds)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.resources: dict[str, dict] = {}

    def emit(self, record: logging.LogRecord) -> None:
        done = getattr(record, "stripe_resource_done", None)
        if done:
            self.resources[done["resource"]] = {k: v for k, v in done.items() if k != "resource"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, help="customers of the generated account (24 months of history)")
    parser.add_argument("--invoices", type=int, default=100_000, help="or: about this many invoices")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every response by the server")
    parser.add_argument("--max-rps", type=float, default=100.0, help="STRIPE_MAX_RPS of the load (Stripe live: 100)")
    parser.add_argument(
        "--render-on-request",
        action="store_true",
        help="the server renders each page when asked (default: pages rendered before the load, see PrecomputedServer)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="STRIPE_CONCURRENCY of the load (default 4)")
    parser.add_argument("--work", type=Path, help="keep the generated account here and reuse it (default: a temp dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    progress = logging.getLogger("saas_metrics.ingestion.stripe")
    progress.setLevel(logging.INFO)  # the progress lines a long load prints
    resource_stats = ResourceStats()
    progress.addHandler(resource_stats)
    customers = args.customers or max(1, int(args.invoices / INVOICES_PER_CUSTOMER))
    now = int(time.time()) // 86400 * 86400
    work = args.work or Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    store = generated_store(work, customers, 24, 1, now)
    objects = {kind: store.count(kind) for kind in ("customer", "subscription", "invoice", "line_item", "event")}
    print(f"Stripe load benchmark: {objects}", flush=True)
    precompute = not args.render_on_request
    with (
        throwaway_postgres() as pg,
        server_process(str(store.path), now, args.latency_ms / 1000, precompute) as (server_url, served),
        tempfile.TemporaryDirectory(prefix="ingest-bench-dlt-") as pipelines_dir,
    ):
        pipeline = dlt.pipeline(
            "bench_stripe",
            destination=dlt.destinations.postgres(pg.url()),
            dataset_name="raw_stripe",
            pipelines_dir=pipelines_dir,
        )
        load_before = os.getloadavg()[0]
        cpu0, started = time.process_time(), time.perf_counter()
        pipeline.extract(
            stripe_source(api_key=API_KEY, api_base=server_url, max_rps=args.max_rps, concurrency=args.concurrency)
        )
        cpu1, extracted = time.process_time(), time.perf_counter()
        pipeline.normalize()
        cpu2, normalized = time.process_time(), time.perf_counter()
        pipeline.load()
        cpu3, done = time.process_time(), time.perf_counter()
        server = served()
        load_after = os.getloadavg()[0]
    requests = server["requests"]
    total_objects = sum(objects.values())
    extract_s, total_s = extracted - started, done - started
    by_resource: dict[str, int] = {}
    for path, n in server["by_path"].items():
        resource = resource_of_path(path)
        resource = "subscriptions" if resource == "subscription_items" else resource
        by_resource[resource] = by_resource.get(resource, 0) + n
    per_resource = {}
    for name, stats in sorted(resource_stats.resources.items()):
        seconds = stats["seconds"]
        per_resource[name] = {
            **stats,
            "requests_served": by_resource.get(name, 0),
            "objects_per_second": round(stats["objects"] / seconds) if seconds else None,
            "requests_per_second": round(stats["requests"] / seconds, 1) if seconds else None,
        }
    results = {
        "command": "python -m bench.stripe_ingest " + shlex.join(sys.argv[1:]),
        "customers": customers,
        "objects": objects,
        "latency_ms": args.latency_ms,
        "max_rps": args.max_rps,
        "concurrency": args.concurrency,
        "requests": requests,
        "extract_seconds": round(extract_s, 2),
        "normalize_seconds": round(normalized - extracted, 2),
        "load_seconds": round(done - normalized, 2),
        "total_seconds": round(total_s, 2),
        "objects_per_second": round(total_objects / total_s),
        "extract_objects_per_second": round(total_objects / extract_s),
        "requests_per_second_during_extract": round(requests / extract_s, 1),
        "requests_per_second_overall": round(requests / total_s, 1),
        "budget_used_during_extract_pct": round(100 * requests / (extract_s * args.max_rps), 1),
        "budget_used_overall_pct": round(100 * requests / (total_s * args.max_rps), 1),
        "client_cpu_seconds": {
            "extract": round(cpu1 - cpu0, 2),
            "normalize": round(cpu2 - cpu1, 2),
            "load": round(cpu3 - cpu2, 2),
        },
        "client_cpu_ms_per_request_extract": round(1000 * (cpu1 - cpu0) / requests, 2),
        "client_cpu_ms_per_request_overall": round(1000 * (cpu3 - cpu0) / requests, 2),
        "server_pages_precomputed": not args.render_on_request,
        "server_precomputed_pages_served": server["precomputed_pages_served"],
        "server_cpu_seconds": round(server["cpu"], 2),
        "server_cpu_ms_per_request": round(1000 * server["cpu"] / requests, 2),
        # the machine's 1-minute load average around the load (above its cores: the client waited for a core)
        "load_average": [round(load_before, 2), round(load_after, 2)],
        "cores": os.cpu_count(),
        "client_cpu_share_during_extract": round((cpu1 - cpu0) / extract_s, 2),
        "per_resource": per_resource,
    }
    for key, value in results.items():
        print(f"  {key}: {value}")
    print(f"results: {save('stripe_ingest' + (f'_latency{int(args.latency_ms)}' if args.latency_ms else ''), results)}")


if __name__ == "__main__":
    main()
