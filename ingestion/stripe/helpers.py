"""Pagination, retries and a shared request budget around the official `stripe` client."""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice

import msgspec
import orjson
import stripe

from ingestion.cleaning import NUL_IN_JSON, CleanedObjects, strip_nul
from ingestion.stripe import settings

logger = logging.getLogger("saas_metrics.ingestion.stripe")

# threads asking for next pages ahead: one per list of the source (and lines paged inside the invoices), and
# one per chain of each long list (StripeApi.paginate_split: up to `concurrency` for each of SPLIT_LISTS); the
# request budget (max_rps) still bounds them all
PREFETCH_THREADS = 16


class StripeAuthError(Exception):
    """The API key was refused: retrying cannot help."""


class StripeFetchError(Exception):
    """A request still failed after every retry."""


class StripeBadResponse(stripe.APIError):
    """An answer that is not what Stripe sends: a body that is not JSON (cut short by a proxy, say) or an error
    without Stripe's error object. Retried like a 5xx when its status is 2xx or 5xx. Its message names the
    request, the status and the size, never the body: a page of customers holds their names and emails."""

    def __init__(self, path: str, status: int, size: int, what: str):
        super().__init__(f"GET {path} answered {status} with {what} ({size:,} bytes)", http_status=status)
        self.reason = f"{status} with {what}"


class RateLimiter:
    """A token bucket shared by every thread: at most `rate` requests a second overall."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self.next_at = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        with self.lock:
            now = time.monotonic()
            wait = self.next_at - now
            self.next_at = max(now, self.next_at) + self.interval
        if wait > 0:
            time.sleep(wait)


class StripeApi:
    """Read-only access to one Stripe account (or any server speaking its protocol)."""

    def __init__(
        self,
        api_key: str,
        api_base: str | None = None,
        max_rps: float = 25.0,
        concurrency: int = 4,
        max_retries: int = settings.MAX_RETRIES,
        cleaned: CleanedObjects | None = None,
        timeout: float = settings.REQUEST_TIMEOUT_SECONDS,
        stripe_account: str | None = None,
    ):
        options = {"base_addresses": {"api": api_base}} if api_base else {}
        # a platform reading one of its connected accounts: every request carries the Stripe-Account header
        self.request_options = {"stripe_account": stripe_account} if stripe_account else {}
        # The client's own retries skip 429s without a Stripe-Should-Retry header; ours don't.
        # A stalled connection counts as failed after `timeout` seconds (STRIPE_TIMEOUT).
        self.client = stripe.StripeClient(
            api_key, max_network_retries=0, http_client=stripe.RequestsClient(timeout=timeout), **options
        )
        self.limiter = RateLimiter(max_rps)
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        # objects whose NUL characters were removed (PostgreSQL cannot store them)
        self.cleaned = cleaned if cleaned is not None else CleanedObjects()
        self.requests = 0
        self.retries = 0
        self.pages: dict[str, int] = {}  # requests per resource ("invoices": lists, lines, retrieves)
        self._count_lock = threading.Lock()
        # set by the first request that fails for good: every other fetch stops instead of retrying on
        self.aborted = threading.Event()
        self._prefetcher: ThreadPoolExecutor | None = None

    def get(self, path: str, **params) -> dict:
        """One GET with bounded, jittered exponential backoff on 429, 5xx and dropped connections."""
        return self.fetch(path, params)

    def fetch(self, path: str, params: dict, parse: Callable[[bytes | str], dict] | None = None) -> dict:
        """`get`, the response read by `parse` (a list page read lean: ingestion/stripe/pages.py) when it can
        be: a body `parse` does not expect, or with an escaped NUL character, is read into dicts as `get` does."""
        attempt = 0
        while True:
            if self.aborted.is_set():
                raise StripeFetchError("stopped: another request of this load failed")
            self.limiter.acquire()
            with self._count_lock:
                self.requests += 1
                resource = resource_of_path(path)
                self.pages[resource] = self.pages.get(resource, 0) + 1
            try:
                return self._request(path, params, parse)
            except stripe.AuthenticationError as exc:
                self.aborted.set()
                raise StripeAuthError("invalid Stripe API key (the server answered 401)") from exc
            except stripe.PermissionError as exc:
                self.aborted.set()
                raise StripeAuthError(f"the Stripe API key may not read {path}: {exc.user_message}") from exc
            except (stripe.RateLimitError, stripe.APIConnectionError, stripe.APIError) as exc:
                status = getattr(exc, "http_status", None)
                if not _retryable(exc, status):
                    raise
                reason = getattr(exc, "reason", None) or status or type(exc).__name__
                attempt += 1
                if attempt > self.max_retries:
                    self.aborted.set()
                    raise StripeFetchError(f"GET {path} failed after {self.max_retries} retries: {reason}") from exc
                delay = backoff_seconds(attempt)
                with self._count_lock:
                    self.retries += 1
                logger.warning(
                    "GET %s answered %s; retrying in %.0f s, attempt %d of %d",
                    path,
                    reason,
                    delay,
                    attempt + 1,
                    self.max_retries + 1,
                )
                if self.aborted.wait(delay):
                    raise StripeFetchError("stopped: another request of this load failed") from exc

    def _request(self, path: str, params: dict, parse: Callable[[bytes | str], dict] | None = None) -> dict:
        """GET through the stripe library's requestor (its HTTP client, headers, timeouts and error classes):
        the response's parsed JSON, NUL characters removed.

        What `StripeClient.raw_request` does, but for a success the body is read by `parse`, or parsed with
        orjson into plain dicts: the library parses every body into OrderedDicts with the standard json
        module, which took more of the load's CPU than anything else. An error answer goes through the
        library as before when it is Stripe's error object; a body that is neither JSON nor such an error is a
        StripeBadResponse, which does not carry it (the library's own error would quote the whole body).
        """
        requestor = self.client._requestor
        body, code, headers = requestor.request_raw(
            "get",
            path,
            params=params,
            options=dict(self.request_options),
            base_address="api",
            api_mode="V1",
            usage=["raw_request"],
        )
        if 200 <= code < 300:
            has_nul = _has_nul(body)
            if parse is not None and not has_nul:
                try:
                    return parse(body)
                except msgspec.MsgspecError:
                    pass  # not what the lean reading expects: read into dicts
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise StripeBadResponse(path, code, len(body), "a body that is not JSON") from None
            if not isinstance(data, dict):
                raise StripeBadResponse(path, code, len(body), "JSON that is not an object")
            return self._without_nul(data) if has_nul else data
        try:
            error = orjson.loads(body).get("error")
        except (orjson.JSONDecodeError, AttributeError):
            error = None
        if not isinstance(error, dict | str):
            raise StripeBadResponse(path, code, len(body), "a body that is not a Stripe error") from None
        requestor._interpret_response(body, code, headers, "V1")  # raises the library's error for it
        raise StripeBadResponse(path, code, len(body), "an error the library did not raise")

    def _without_nul(self, data: dict) -> dict:
        """The response's objects, NUL characters removed (and the objects changed recorded). Only a
        response whose JSON text has one is walked (_has_nul): the test of the text is all the others cost."""
        data, _ = strip_nul(data, self.cleaned)
        return data

    def _prefetch(self) -> ThreadPoolExecutor:
        """Threads asking for the next page of each list while the caller processes the current one: a
        list's pages follow one another (`starting_after`), but its network wait need not add to our work."""
        with self._count_lock:
            if self._prefetcher is None:
                threads = PREFETCH_THREADS + len(settings.SPLIT_LISTS) * self.concurrency
                self._prefetcher = ThreadPoolExecutor(threads, thread_name_prefix="stripe-next-page")
            return self._prefetcher

    def pages_of(self, resource: str) -> int:
        """Requests made so far for one resource (subscriptions include their items' pages)."""
        with self._count_lock:
            extra = self.pages.get("subscription_items", 0) if resource == "subscriptions" else 0
            return self.pages.get(resource, 0) + extra

    def paginate(
        self,
        path: str,
        params: dict | None = None,
        starting_after: str | None = None,
        missing_ok: bool = False,
        parse: Callable[[bytes | str], dict] | None = None,
    ) -> Iterator:
        """Every object of a list, following `has_more` / `starting_after` (each page read by `parse`, see fetch).

        missing_ok: a server that does not offer this list at all (an emulator answering 404 on the
        first page) yields nothing, with a warning, instead of failing the load.
        A server that does not know an expansion asked for (an emulator, an old API version: a 400
        "Bad expand" on the first page) is asked again without expansions, with a warning.
        """
        first = self._first_page(path, params, starting_after, missing_ok, parse)
        if first is None:
            return
        data, has_more, params = first
        while True:
            if not has_more or not data:
                yield from data
                return
            # the next page is asked for while the caller processes this one
            next_page = self._prefetch().submit(
                self.fetch, path, {**params, "limit": settings.PAGE_SIZE, "starting_after": data[-1]["id"]}, parse
            )
            yield from data
            page = next_page.result()
            data, has_more = page.get("data", []), bool(page.get("has_more"))

    def _first_page(
        self,
        path: str,
        params: dict | None,
        starting_after: str | None,
        missing_ok: bool,
        parse: Callable[[bytes | str], dict] | None = None,
    ) -> tuple[list, bool, dict] | None:
        """The first page of a list: its objects, whether more follow, and the params it was asked with (without
        an expansion the server does not know); None for a list the server does not offer (see paginate)."""
        params = dict(params or {})
        while True:
            page_params = {**params, "limit": settings.PAGE_SIZE}
            if starting_after:
                page_params["starting_after"] = starting_after
            try:
                page = self.fetch(path, page_params, parse)
            except stripe.StripeError as exc:
                if missing_ok and getattr(exc, "http_status", None) == 404:
                    logger.warning("GET %s answered 404: this server does not offer it; nothing loaded", path)
                    return None
                if _bad_expand(exc) and params.get("expand"):
                    logger.warning("GET %s: %s; loading without expansions", path, exc.user_message or exc)
                    params.pop("expand")
                    continue
                raise
            return page.get("data", []), bool(page.get("has_more")), params

    def paginate_split(
        self,
        path: str,
        params: dict | None = None,
        missing_ok: bool = False,
        prepare: Callable | None = None,
        parse: Callable[[bytes | str], dict] | None = None,
        time_field: str = "created",
    ) -> Iterator:
        """Every page of a long list (as `prepare(objects)`, or the list of its objects), its pages asked for
        by up to `concurrency` chains at once, in no particular order.

        One list's pages follow one another (`starting_after`): one chain of pages asks one page at a time,
        so a long list (invoices) would take its pages one round trip after another, far below the request
        budget. The first pages are read as `paginate` reads them (with its 404 and expansion fallbacks);
        the rest of a list longer than settings.SPLIT_AFTER_PAGES pages is split on `created`: a chain
        that reads a page and sees more to come hands the older half of its remaining range, `created` in
        [lo, mid), to a new chain while fewer than `concurrency` run, and goes on with [mid, hi) after its
        cursor. The ranges never overlap and cover the whole list: nothing is read twice or missed. A page
        with an object outside its range (a server that ignores `created` filters) fails the load rather
        than load it twice. `prepare` runs on each page in the chain that read it (turning objects into rows,
        asking for an invoice's lines past the tenth): the caller only collects what it returns. `parse` reads
        each page (see fetch): `prepare` gets its objects. `time_field` is the field the list is ordered by and
        its `created` filter applies to (`date` for invoice items, which have no `created`: settings.TIME_FIELDS).
        """
        prepare = prepare or list
        params = dict(params or {})
        created = dict(params.get("created") or {})
        if set(created) - {"gte"} or self.concurrency < 2:
            objects = self.paginate(path, params, missing_ok=missing_ok, parse=parse)
            while page := list(islice(objects, settings.PAGE_SIZE)):
                yield prepare(page)
            return
        first = self._first_page(path, params, None, missing_ok, parse)
        if first is None:
            return
        data, has_more, params = first
        read = 1
        # a short list is read as `paginate` reads it: splitting costs a request or two per range
        while has_more and data and read < settings.SPLIT_AFTER_PAGES:
            next_page = self._prefetch().submit(
                self.fetch, path, {**params, "limit": settings.PAGE_SIZE, "starting_after": data[-1]["id"]}, parse
            )
            yield prepare(data)
            page = next_page.result()
            data, has_more = page.get("data", []), bool(page.get("has_more"))
            read += 1
        if not has_more or not data:
            if data:
                yield prepare(data)
            return
        params.pop("created", None)
        low = created.get("gte", 0)
        pages: queue.Queue = queue.Queue(maxsize=4 * self.concurrency)
        stop = threading.Event()
        lock = threading.Lock()
        started, finished = [0], [0]  # chains started, chains finished
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="stripe-list-range")

        def when(obj) -> int:
            """The object's `time_field` (a dict, or read lean): an object without one cannot be placed in a range."""
            value = obj.get(time_field) if isinstance(obj, dict) else obj[time_field]
            if value is None:
                raise StripeFetchError(
                    f"GET {path} returned {obj['id']} without `{time_field}`: its list cannot be split"
                )
            return value

        def put(item) -> None:
            while not stop.is_set():
                try:
                    pages.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def start(lo: int, hi: int | None, after: str | None) -> None:
            with lock:
                started[0] += 1
            pool.submit(chain, lo, hi, after)

        def ask(lo: int, hi: int | None, after: str | None):
            window = {"gte": lo, **({"lt": hi} if hi is not None else {})}
            page_params = {**params, "created": window, "limit": settings.PAGE_SIZE}
            if after:
                page_params["starting_after"] = after
            return self._prefetch().submit(self.fetch, path, page_params, parse)

        def chain(lo: int, hi: int | None, after: str | None) -> None:
            try:
                next_page = ask(lo, hi, after)
                while not stop.is_set():
                    page = next_page.result()
                    rows = page.get("data", [])
                    outside = [o["id"] for o in rows if not lo <= when(o) < (hi if hi is not None else 2**63)]
                    if outside:
                        raise StripeFetchError(
                            f"GET {path} returned {outside[0]} outside created[gte]={lo}, created[lt]={hi}: this "
                            "server ignores created filters"
                        )
                    more = page.get("has_more") and rows
                    if more:
                        after, last = rows[-1]["id"], when(rows[-1])
                        with lock:
                            room = started[0] - finished[0] < self.concurrency
                        if room and last - lo >= 2:
                            mid = lo + (last - lo) // 2
                            start(lo, mid, None)
                            lo = mid
                        # the next page is asked for while this one is prepared
                        next_page = ask(lo, hi, after)
                    put(("page", prepare(rows)))
                    if not more:
                        return
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
                put(("error", exc))
            finally:
                with lock:
                    finished[0] += 1
                put(("done", None))

        last = when(data[-1])
        if last - low >= 2:
            mid = low + (last - low) // 2
            start(mid, None, data[-1]["id"])
            start(low, mid, None)
        else:
            start(low, None, data[-1]["id"])
        done = 0
        try:
            yield prepare(data)
            while True:
                kind, value = pages.get()
                if kind == "page":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    done += 1
                    with lock:
                        if done == started[0]:
                            return
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def complete_list(self, embedded: dict | None, path: str, params: dict | None = None) -> list[dict]:
        """An embedded list (invoice.lines, subscription.items) with the rows past the first page."""
        embedded = embedded or {"data": [], "has_more": False}
        rows = list(embedded.get("data") or [])
        if embedded.get("has_more"):
            rows.extend(self.paginate(path, params, starting_after=rows[-1]["id"] if rows else None))
        return rows

    def retrieve_many(self, path_template: str, ids: list[str], params: dict | None = None) -> Iterator[dict]:
        """Fetch objects by id concurrently (within the shared request budget)."""

        def fetch(object_id: str) -> dict | None:
            try:
                try:
                    return self.get(path_template.format(id=object_id), **(params or {}))
                except stripe.InvalidRequestError as exc:
                    if not (_bad_expand(exc) and (params or {}).get("expand")):
                        raise
                    # a server that does not know the expansion (see paginate)
                    plain = {k: v for k, v in params.items() if k != "expand"}
                    return self.get(path_template.format(id=object_id), **plain)
            except stripe.InvalidRequestError as exc:
                if getattr(exc, "http_status", None) == 404:
                    return None  # deleted since the event
                raise

        with ThreadPoolExecutor(self.concurrency) as pool:
            for obj in pool.map(fetch, ids):
                if obj is not None:
                    yield obj


def backoff_seconds(attempt: int) -> float:
    """The wait before retry `attempt` (1, 2, ...) of a request: 0.5 s doubling up to 30 s (settings.py), each
    drawn between half and all of that, so that threads failing together do not retry together."""
    delay = min(settings.BACKOFF_MAX_SECONDS, settings.BACKOFF_BASE_SECONDS * 2 ** (attempt - 1))
    return delay * (0.5 + random.random() / 2)


def _retryable(exc: Exception, status: int | None) -> bool:
    """429s, 5xx, dropped connections, and 2xx answers whose body is not what Stripe sends (StripeBadResponse)
    are worth another try; any other error answer (400, 404) is not."""
    if isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError) or status is None:
        return True
    return status >= 500 or status == 429 or (isinstance(exc, StripeBadResponse) and status < 300)


def _has_nul(body: str | bytes) -> bool:
    """Whether a response's JSON text has an escaped NUL character (JSON cannot carry it raw)."""
    return (NUL_IN_JSON if isinstance(body, str) else NUL_IN_JSON.encode()) in body


def _bad_expand(exc: Exception) -> bool:
    """A 400 for an expansion the server does not know ("Bad expand 'discounts'", "This property cannot
    be expanded")."""
    message = str(getattr(exc, "user_message", None) or exc).lower()
    return getattr(exc, "http_status", None) == 400 and "expand" in message


def resource_of_path(path: str) -> str:
    """/v1/invoices/in_1/lines -> invoices"""
    parts = path.strip("/").split("/")
    return parts[1] if len(parts) > 1 else path
