"""The Stripe source against a Stripe-protocol server: every trap of the real API, one test each."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime

import pytest
import stripe

from ingestion.stripe import SyncPlan, _prepare, pages, settings
from ingestion.stripe.helpers import StripeApi, StripeFetchError
from saas_metrics.demo.billing import Account, Item
from saas_metrics.demo.server import StripeProtocolServer
from saas_metrics.demo.store import Store
from tests.conftest import query
from tests.support.faults import Faults
from tests.support.pipeline import API_KEY, load_from, load_stripe

DAY = 86400


def build_account(store: Store, now: int, customers: int = 230) -> Account:
    """230 customers (3 pages of 100), canceled subscriptions, an invoice of 25 lines, 13 items."""
    acct = Account(store, now)
    product = acct.product("Pro", now - 400 * DAY)
    monthly = acct.price(product, 5000, now - 400 * DAY)
    packs = [acct.price(product, 100 + i, now - 400 * DAY) for i in range(25)]
    for n in range(customers):
        start = now - (300 - n) * DAY
        sub = acct.subscribe(acct.customer(start), [Item(monthly)], start)
        if n % 10 == 0:
            sub.cancel(start + 40 * DAY)
        sub.finish()
    big = acct.customer(now - 100 * DAY, id="cus_big")
    acct.subscribe(big, [Item(p) for p in packs[:13]], now - 100 * DAY, id="sub_thirteen_items").finish()
    acct.subscribe(big, [Item(p) for p in packs], now - 20 * DAY, id="sub_twentyfive_lines").finish()
    acct.flush()
    return acct


@pytest.fixture(scope="module")
def account(tmp_path_factory):
    now = int(time.time())
    store = Store(tmp_path_factory.mktemp("stripe") / "stripe.sqlite")
    build_account(store, now)
    return store, now


def counts(url: str) -> dict[str, int]:
    tables = ["customers", "subscriptions", "subscription_items", "invoices", "invoice_lines", "events", "prices"]
    return {t: query(url, f"select count(*) from raw_stripe.{t}")[0][0] for t in tables}


def test_full_load_pages_everything(account, fresh_database, tmp_path):
    store, now = account
    url = fresh_database()
    _, stats = load_stripe(store, url, tmp_path, now)
    loaded = counts(url)
    assert loaded["customers"] == store.count("customer") == 231
    # canceled subscriptions are hidden unless status=all: all 232 must be there, 23 of them canceled
    assert loaded["subscriptions"] == store.count("subscription") == 232
    assert query(url, "select count(*) from raw_stripe.subscriptions where status = 'canceled'")[0][0] == 23
    assert loaded["invoices"] == store.count("invoice")
    assert loaded["invoice_lines"] == store.count("line_item")
    # the invoice of 25 lines and the subscription of 13 items are complete past the 10 embedded rows
    assert (
        query(
            url,
            "select count(*) from raw_stripe.invoice_lines l join raw_stripe.invoices i "
            "on i.id = l.invoice_id where i.subscription_id = 'sub_twentyfive_lines'",
        )[0][0]
        == 25
    )
    assert (
        query(url, "select count(*) from raw_stripe.subscription_items where subscription_id = 'sub_thirteen_items'")[
            0
        ][0]
        == 13
    )
    assert stats.by_path.get("/v1/invoices/{id}/lines", 0) >= 1
    assert stats.by_path.get("/v1/subscription_items", 0) >= 1
    # 231 customers in pages of 100: 3 requests
    assert stats.by_path["/v1/customers"] == 3


def test_server_hides_canceled_subscriptions_without_status_all(account):
    store, now = account
    with StripeProtocolServer(store, api_key=API_KEY, now=now) as server:
        api = StripeApi(API_KEY, server.url, max_rps=1000)
        default = list(api.paginate("/v1/subscriptions"))
        everything = list(api.paginate("/v1/subscriptions", {"status": "all"}))
    assert len(default) == 209 and len(everything) == 232


def test_events_window_is_30_days(account):
    store, now = account
    with StripeProtocolServer(store, api_key=API_KEY, now=now) as server:
        events = list(StripeApi(API_KEY, server.url, max_rps=1000).paginate("/v1/events"))
    assert events, "the account has recent events"
    assert min(e["created"] for e in events) >= now - 30 * DAY


def test_rate_limits_server_errors_and_dropped_connections_are_retried(account, fresh_database, tmp_path):
    store, now = account
    faults = Faults()
    faults.add(429, r"^/v1/customers$", times=2)  # no Stripe-Should-Retry header: the client would give up
    faults.add(500, r"^/v1/invoices$", times=1)
    faults.add(503, r"/lines$", times=1)
    faults.add("drop", r"^/v1/prices$", times=1)
    url = fresh_database()
    _, stats = load_stripe(store, url, tmp_path, now, faults=faults)
    assert all(rule["times"] == 0 for rule in faults.rules), "every injected failure was met"
    assert counts(url)["customers"] == 231
    assert counts(url)["invoice_lines"] == store.count("line_item")


def test_retries_are_bounded(account, fresh_database, tmp_path):
    store, now = account
    faults = Faults()
    faults.add(500, r"^/v1/coupons$", times=1000)
    with pytest.raises(Exception, match="failed after 2 retries: 500"):
        load_stripe(store, fresh_database(), tmp_path, now, faults=faults, max_retries=2)
    assert faults.rules[0]["times"] == 1000 - 3  # one try and two retries


def test_invalid_key_stops_at_once(account, tmp_path):
    store, now = account
    with StripeProtocolServer(store, api_key="sk_test_the_right_one", now=now) as server:
        api = StripeApi("sk_test_wrong", server.url, max_rps=1000)
        with pytest.raises(Exception, match="invalid Stripe API key"):
            list(api.paginate("/v1/customers"))
        assert server.stats.requests == 1


def test_rerun_never_duplicates(account, fresh_database, tmp_path):
    store, now = account
    url = fresh_database()
    load_stripe(store, url, tmp_path, now, full_refresh=True)
    first = counts(url)
    load_stripe(store, url, tmp_path, now, full_refresh=True)
    assert counts(url) == first


def test_a_load_killed_midway_is_completed_by_the_next(account, fresh_database, tmp_path):
    store, now = account
    clean = fresh_database()
    load_stripe(store, clean, tmp_path / "clean", now)
    killed = fresh_database()
    faults = Faults()
    faults.add(500, r"^/v1/invoices$", times=1000)  # dies on the invoices list, after other lists loaded
    with pytest.raises(Exception, match="failed after 1 retries: 500"):
        load_stripe(store, killed, tmp_path / "killed", now, faults=faults, max_retries=1)
    load_stripe(store, killed, tmp_path / "killed", now)
    assert counts(killed) == counts(clean)
    digest = "select md5(string_agg(id || data::text, ',' order by id)) from raw_stripe.invoices"
    assert query(killed, digest) == query(clean, digest)


def test_incremental_load_picks_up_changes_and_new_objects(tmp_path, fresh_database):
    now = int(time.time())
    store = Store(tmp_path / "stripe.sqlite")
    acct = Account(store, now)
    product = acct.product("Pro", now - 90 * DAY)
    price = acct.price(product, 5000, now - 90 * DAY)
    subs = []
    for n in range(5):
        start = now - (60 - n) * DAY
        subs.append(acct.subscribe(acct.customer(start, id=f"cus_inc{n}"), [Item(price)], start, id=f"sub_inc{n}"))
    for sub in subs:
        sub.finish()
    acct.flush()
    url = fresh_database()
    load_stripe(store, url, tmp_path, now)
    assert counts(url)["customers"] == 5

    # later: a subscription is canceled (an event says so) and a new customer subscribes
    later = int(time.time()) + 1
    acct2 = Account(store, later + 10, id_prefix="L")
    canceled = store.get("subscription", "sub_inc0")
    canceled.update(status="canceled", ended_at=later, canceled_at=later)
    store.put(canceled)
    acct2.event("customer.subscription.deleted", later, {"id": "sub_inc0", "object": "subscription"})
    newcomer = acct2.customer(later, id="cus_newcomer")
    acct2.subscribe(newcomer, [Item(price)], later).finish()
    acct2.flush()

    _, stats = load_stripe(store, url, tmp_path, later + 10)
    assert counts(url)["customers"] == 6
    assert query(url, "select status from raw_stripe.subscriptions where id = 'sub_inc0'") == [("canceled",)]
    assert query(url, "select count(*) from raw_stripe.subscriptions")[0][0] == 6
    # the changed subscription was fetched by id, not by listing everything again
    assert stats.by_path.get("/v1/subscriptions/{id}", 0) == 1


@pytest.mark.parametrize(
    ("cursor_age_days", "full_refresh", "expected"),
    [(None, False, "full"), (1, False, "incremental"), (29.5, False, "full"), (40, False, "full"), (1, True, "full")],
)
def test_sync_mode(cursor_age_days, full_refresh, expected):
    plan = SyncPlan(api=None, full_refresh=full_refresh)
    cursor = None if cursor_age_days is None else int(plan.started_at - cursor_age_days * DAY)
    assert plan.mode("invoices", cursor) == expected
    assert settings.INCREMENTAL_MAX_AGE_DAYS < settings.EVENT_WINDOW_DAYS


def test_stripe_client_is_the_official_library(account):
    store, now = account
    with StripeProtocolServer(store, api_key=API_KEY, now=now) as server:
        api = StripeApi(API_KEY, server.url)
        assert isinstance(api.client, stripe.StripeClient)
        assert api.get("/v1/customers/cus_big")["id"] == "cus_big"


STAGED_LINES_DIGEST = (
    "select count(*), md5(string_agg(t::text, ',' order by t::text)) from "
    "(select * from staging.stg_stripe__invoice_lines) as t"
)
STAGED_INVOICES_DIGEST = (
    "select count(*), md5(string_agg(t::text, ',' order by t::text)) from "
    "(select * from staging.stg_stripe__invoices) as t"
)
CLASSIFIED_LINES_DIGEST = (
    "select count(*), md5(string_agg(t::text, ',' order by t::text)) from "
    "(select * from intermediate.int_invoice_lines_classified) as t"
)


def test_staged_invoices_follow_refetched_invoices_incrementally(tmp_path, fresh_database):
    """stg_stripe__invoices, stg_stripe__invoice_lines and int_invoice_lines_classified process only what
    a load brought, and end up exactly as a rebuild from scratch: a re-fetched invoice replaces its row
    and all its lines, and its subscription's lines are classified again."""
    from tests.support.pipeline import dbt_build

    now = int(time.time())
    store = Store(tmp_path / "stripe.sqlite")
    acct = Account(store, now)
    product = acct.product("Pro", now - 90 * DAY)
    packs = [acct.price(product, 100 + i, now - 90 * DAY) for i in range(3)]
    for n in range(3):
        start = now - (50 - n) * DAY
        acct.subscribe(acct.customer(start, id=f"cus_stg{n}"), [Item(p) for p in packs], start).finish()
    # 20% off forever, upgraded mid-period: the prorations are valued with the discount of the cycle lines
    # of their period, which are on another invoice
    coupon = acct.coupon(now - 90 * DAY, percent_off=20.0, duration="forever")
    start = now - 40 * DAY
    prorated = acct.subscribe(acct.customer(start, id="cus_prorated"), [Item(packs[0], 10)], start, coupon=coupon)
    prorated.change(start + 10 * DAY, [Item(packs[1], 10, id=prorated.items[0].id)])
    prorated.finish()
    acct.flush()
    url = fresh_database()
    load_stripe(store, url, tmp_path, now)
    staged = "+int_invoice_lines_classified"
    dbt_build(url, tmp_path, now, select=staged)
    invoices = [
        i for (i,) in query(url, "select id from raw_stripe.invoices where customer_id <> 'cus_prorated' order by id")
    ]
    assert len(invoices) == 6
    assert query(
        url, "select count(*) from staging.stg_stripe__invoice_lines where invoice_id = any(%s)", (invoices,)
    ) == [(18,)]
    proration_value = (
        "select sum(mrr_local) from intermediate.int_invoice_lines_classified "
        "where customer_id = 'cus_prorated' and line_kind = 'proration'"
    )
    (prorated_cycle,) = query(
        url,
        "select distinct cycle.invoice_id from intermediate.int_invoice_lines_classified as cycle "
        "join intermediate.int_invoice_lines_classified as proration using (subscription_id, period_end_at) "
        "where cycle.customer_id = 'cus_prorated' and cycle.line_kind = 'recurring' "
        "and proration.line_kind = 'proration'",
    )[0]
    before = query(url, proration_value)
    edited, emptied, untouched = invoices[0], invoices[1], invoices[2]
    # the transaction that last wrote a staged row: unchanged unless the row is parsed again
    written_by = "select xmin::text from staging.stg_stripe__invoices where invoice_id = %s"
    untouched_written_by = query(url, written_by, (untouched,))

    # what the next load's merge leaves in raw_stripe: `edited` re-fetched voided with one line fewer
    # and one line's amount changed, `emptied` re-fetched with no lines left, a new invoice with 2 lines,
    # the cycle invoice of the prorations' period re-fetched with its amounts doubled
    query(
        url,
        """
        update raw_stripe.invoices set synced_at = synced_at + interval '1 day',
            data = jsonb_set(data, '{status}', '"void"') where id = %(edited)s;
        delete from raw_stripe.invoice_lines
            where id = (select min(id) from raw_stripe.invoice_lines where invoice_id = %(edited)s);
        update raw_stripe.invoice_lines set synced_at = synced_at + interval '1 day',
            data = jsonb_set(data, '{amount}', '7') where invoice_id = %(edited)s;
        update raw_stripe.invoices set synced_at = synced_at + interval '1 day' where id = %(prorated_cycle)s;
        update raw_stripe.invoice_lines set synced_at = synced_at + interval '1 day',
            data = jsonb_set(data, '{amount}', to_jsonb((data ->> 'amount')::bigint * 2))
            where invoice_id = %(prorated_cycle)s;
        update raw_stripe.invoices set synced_at = synced_at + interval '1 day' where id = %(emptied)s;
        delete from raw_stripe.invoice_lines where invoice_id = %(emptied)s;
        insert into raw_stripe.invoices (id, account, created, data, synced_at, customer_id, subscription_id,
                                         status, _dlt_load_id, _dlt_id)
            select 'in_new', account, created, jsonb_set(data, '{id}', '"in_new"'), synced_at + interval '1 day',
                   customer_id, subscription_id, status, _dlt_load_id, 'new-invoice'
            from raw_stripe.invoices where id = %(untouched)s;
        insert into raw_stripe.invoice_lines (id, account, invoice_id, data, synced_at, _dlt_load_id, _dlt_id)
            select id || '_new', account, 'in_new', data, synced_at + interval '1 day', _dlt_load_id, _dlt_id || '-new'
            from raw_stripe.invoice_lines where invoice_id = %(untouched)s order by id limit 2;
        select 1
        """,
        {"edited": edited, "emptied": emptied, "untouched": untouched, "prorated_cycle": prorated_cycle},
    )
    dbt_build(url, tmp_path, now, select=staged)
    lines = dict(query(url, "select invoice_id, count(*) from staging.stg_stripe__invoice_lines group by 1"))
    assert (lines.get(edited), lines.get(emptied), lines.get("in_new"), lines.get(untouched)) == (2, None, 2, 3)
    assert query(
        url, "select distinct amount_cents from staging.stg_stripe__invoice_lines where invoice_id = %s", (edited,)
    ) == [(7,)]
    assert query(url, "select status from staging.stg_stripe__invoices where invoice_id = %s", (edited,)) == [("void",)]
    # untouched rows were not parsed again
    assert query(url, written_by, (untouched,)) == untouched_written_by
    classified = dict(
        query(url, "select invoice_id, count(*) from intermediate.int_invoice_lines_classified group by 1")
    )
    assert (classified.get(edited), classified.get(emptied), classified.get("in_new")) == (2, None, 2)
    # the prorations' invoice was not loaded again, but they were valued again: the cycle lines of their
    # period now bill twice the amount with the same discount (net ratio 0.8 -> 0.9)
    assert query(url, proration_value) != before
    digests = (STAGED_LINES_DIGEST, STAGED_INVOICES_DIGEST, CLASSIFIED_LINES_DIGEST)
    incremental = [query(url, digest) for digest in digests]
    dbt_build(url, tmp_path, now, select=staged, full_refresh=True)
    assert [query(url, digest) for digest in digests] == incremental


def nul_account(store: Store, now: int) -> str:
    """Two customers; NULs in cus_nul's name, a metadata key and value, a product name, a setup fee's
    line description, and in a customer.updated event of cus_nul. Returns the setup invoice's id."""
    acct = Account(store, now)
    product = acct.product("Pro\x00", now - 90 * DAY)
    price = acct.price(product, 5000, now - 90 * DAY)
    customer = acct.customer(now - 60 * DAY, id="cus_nul", metadata={"tenant_id": "acme\x00", "no\x00te": "x"})
    customer["name"] = "Acme\x00 Corp"
    acct.subscribe(customer, [Item(price)], now - 60 * DAY).finish()
    setup = acct.one_off_invoice(customer, now - 50 * DAY, 1000, description="Setup\x00 fee")
    acct.event("customer.updated", now - DAY, customer)
    clean = acct.customer(now - 60 * DAY, id="cus_clean")
    acct.subscribe(clean, [Item(price)], now - 60 * DAY).finish()
    acct.flush()
    return setup["id"]


def test_nul_characters_are_removed_and_counted_not_fatal(tmp_path, fresh_database):
    """PostgreSQL refuses U+0000 in text and jsonb (`unsupported Unicode escape sequence`): one NUL in
    any string of any object used to fail the whole load. It is removed, and the objects changed are
    counted by type (a line's NUL changes its line and the invoice embedding it)."""
    from ingestion.cleaning import CleanedObjects

    now = int(time.time())
    store = Store(tmp_path / "stripe.sqlite")
    setup = nul_account(store, now)
    url = fresh_database()
    cleaned = CleanedObjects()
    with StripeProtocolServer(store, api_key=API_KEY, now=now) as server:
        load_from(server.url, API_KEY, url, tmp_path, cleaned=cleaned)
    assert query(url, "select data ->> 'name', data -> 'metadata' from raw_stripe.customers where id = 'cus_nul'") == [
        ("Acme Corp", {"tenant_id": "acme", "note": "x"})
    ]
    assert query(url, "select data ->> 'name' from raw_stripe.products") == [("Pro",)]
    lines = "select data ->> 'description' from raw_stripe.invoice_lines where invoice_id = %s"
    assert query(url, lines, (setup,)) == [("Setup fee",)]
    assert query(url, "select count(*) from raw_stripe.customers")[0][0] == 2
    # customers: cus_nul; products: Pro; invoice_lines: the setup fee's line; invoices: the setup
    # invoice embedding it; events: customer.updated of cus_nul (the customer inside it is not counted
    # again: the event is what is stored). Nothing else.
    assert cleaned.counts() == {"customer": 1, "product": 1, "line_item": 1, "invoice": 1, "event": 1}


def test_nul_counts_are_in_the_ingestion_assets_metadata(tmp_path, fresh_database, monkeypatch):
    """The run's metadata: each stripe/<table> materialization says how many of its objects were
    stored with NULs removed, and product/events how many events."""
    import dagster as dg

    from orchestration.defs.ingestion import product_assets, stripe_assets
    from orchestration.defs.resources import build_resources
    from saas_metrics import runtime

    now = int(time.time())
    store = Store(tmp_path / "stripe.sqlite")
    nul_account(store, now)
    events = tmp_path / "events"
    events.mkdir()
    rows = [
        {"event_id": "e1", "account_id": "acme", "event_name": "login", "timestamp": "2026-01-01T00:00:00Z"},
        {"event_id": "e2", "account_id": "acme", "event_name": "lo\x00gin", "timestamp": "2026-01-01T00:00:00Z"},
    ]
    (events / "a.ndjson").write_text("".join(json.dumps(r) + "\n" for r in rows))
    url = fresh_database()
    with StripeProtocolServer(store, api_key=API_KEY, now=now) as server:
        for name, value in {
            "DATABASE_URL": url,
            "STRIPE_API_KEY": API_KEY,
            "STRIPE_API_BASE": server.url,
            "STRIPE_MAX_RPS": "2000",
            "SAAS_METRICS_EVENTS_DIR": str(events),
        }.items():
            monkeypatch.setenv(name, value)
        runtime.settings.cache_clear()
        runtime.prepare_environment()
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize([stripe_assets, product_assets], resources=build_resources(), instance=instance)
    assert result.success
    nul_removed = {
        m.asset_key.to_user_string(): m.metadata.get(
            "objects_with_nul_removed", m.metadata.get("events_with_nul_removed")
        )
        for m in result.get_asset_materialization_events()
        for m in [m.event_specific_data.materialization]
    }
    assert {key: n.value for key, n in nul_removed.items() if n is not None and n.value} == {
        "stripe/customers": 1,
        "stripe/products": 1,
        "stripe/invoices": 1,
        "stripe/invoice_lines": 1,
        "stripe/events": 1,
        "product/events": 1,
    }
    assert nul_removed["stripe/subscriptions"].value == 0
    assert query(url, "select event_name from raw_product.events order by event_id") == [("login",), ("login",)]


def _invoices_store(path, count: int, now: int) -> Store:
    """`count` bare invoices, three per second of `created` (ties at every page and range boundary)."""
    store = Store(path)
    store.put_many(
        {"object": "invoice", "id": f"in_{i:05d}", "created": now - 5000 + i // 3, "customer": "cus_1"}
        for i in range(count)
    )
    return store


def test_long_list_read_by_chains_over_created_ranges(tmp_path):
    # 1,250 invoices = 13 pages of 100. The first SPLIT_AFTER_PAGES (3) pages are read one after the other,
    # the other 950 invoices by up to 4 chains over ranges of `created`: every invoice exactly once
    now = int(time.time())
    store = _invoices_store(tmp_path / "stripe.sqlite", 1250, now)
    with StripeProtocolServer(store, api_key=API_KEY, now=now) as server:
        api = StripeApi(API_KEY, server.url, max_rps=1000, concurrency=4)
        # from the first invoice's second (as an incremental load asks): the ranges' bounds fall among the invoices
        since = {"created": {"gte": now - 5000}}
        threads = set()

        def prepare(objects: list[dict]) -> list[str]:
            threads.add(threading.current_thread().name.rpartition("_")[0])
            return [o["id"] for o in objects]

        pages = list(api.paginate_split("/v1/invoices", since, prepare=prepare))
    ids = [i for page in pages for i in page]
    assert len(ids) == 1250 and len(set(ids)) == 1250
    # pages were read (and prepared) by the range chains; at most one partial page per range more than 13
    assert "stripe-list-range" in threads
    assert 13 <= api.requests < 26


def test_long_list_from_a_server_ignoring_created_filters_fails(tmp_path):
    # a server that ignores created[gte]/created[lt] would hand every chain the same objects: the load fails
    # rather than load them twice (or more)
    class IgnoresCreated(StripeProtocolServer):
        def _list(self, type_, path, flat, arrays, **kwargs):
            return super()._list(type_, path, flat, {k: v for k, v in arrays.items() if k != "created"}, **kwargs)

    now = int(time.time())
    store = _invoices_store(tmp_path / "stripe.sqlite", 1250, now)
    with IgnoresCreated(store, api_key=API_KEY, now=now) as server:
        api = StripeApi(API_KEY, server.url, max_rps=1000, concurrency=4)
        with pytest.raises(StripeFetchError, match="ignores created filters"):
            list(api.paginate_split("/v1/invoices", {}))


def _table_rows(table) -> list[dict] | None:
    """An Arrow table's rows, `data` parsed (its JSON text differs in form only: jsonb stores the same)."""
    if table is None:
        return None
    return [{**row, "data": json.loads(row["data"])} for row in table.to_pylist()]


def test_pages_read_lean_make_the_rows_of_pages_read_as_dicts(account):
    # A list page read lean (pages.reader: objects kept as JSON text, a few fields decoded) makes the same rows,
    # the same prices named and listed as the page parsed into dicts, for every list the source reads, and so does
    # Stripe's indented JSON; an invoice or subscription with more than 10 lines or items is handed on as a dict
    # (its rows past the tenth fetched as before)
    store, now = account
    synced_at = datetime.fromtimestamp(now, UTC)
    as_dicts_kept = more_than_ten = 0
    with StripeProtocolServer(store, api_key=API_KEY, now=now) as server:
        api = StripeApi(API_KEY, server.url, max_rps=1000)
        for name, (path, params, _) in settings.LISTS.items():
            read = pages.reader(name)
            after = None
            while True:
                page_params = {**params, "limit": settings.PAGE_SIZE, **({"starting_after": after} if after else {})}
                as_dicts = api.fetch(path, page_params)
                indented = read(json.dumps(as_dicts, indent=2))
                lean = api.fetch(path, page_params, read)
                assert as_dicts["has_more"] == lean["has_more"] == indented["has_more"]
                assert all(isinstance(obj, pages.LeanObject | dict) for obj in lean["data"])
                as_dicts_kept += sum(isinstance(obj, dict) for obj in lean["data"])
                embedded = {"invoices": "lines", "subscriptions": "items"}.get(name)
                more_than_ten += sum(bool((obj.get(embedded) or {}).get("has_more")) for obj in as_dicts["data"])
                made = []
                for objects in (as_dicts["data"], lean["data"], indented["data"]):
                    plan = SyncPlan(api, full_refresh=True)
                    page = _prepare(api, plan, name, synced_at, "1", objects)
                    rows = (page.ids, _table_rows(page.rows), _table_rows(page.children))
                    made.append((rows, plan.named_prices, plan.listed_prices))
                assert made[0] == made[1] == made[2], name
                if not as_dicts["has_more"] or not as_dicts["data"]:
                    break
                after = as_dicts["data"][-1]["id"]
    # the invoice of 25 lines, the subscription of 13 items and its invoices
    assert as_dicts_kept == more_than_ten == 7


def _exception_texts(exc: BaseException | None) -> str:
    """Everything an error says, its causes and contexts too (what a traceback or Dagster's event log shows)."""
    texts = []
    while exc is not None:
        texts += [str(exc), repr(exc)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(texts)


def test_a_truncated_body_is_retried_and_never_quoted(account):
    """Issue 31.3: a 200 whose JSON was cut short was not retried (only the whole step was, minutes later), and
    the error quoted the whole body: customers' emails. Now it is retried like a 5xx, and no error carries it."""
    store, now = account
    faults = Faults()
    faults.add("truncate", r"^/v1/customers$", times=2)
    with StripeProtocolServer(store, api_key=API_KEY, now=now, faults=faults) as server:
        api = StripeApi(API_KEY, server.url, max_rps=1000)
        assert len(list(api.paginate("/v1/customers"))) == 231
        assert faults.rules[0]["times"] == 0 and api.retries == 2
        faults.add("truncate", r"^/v1/customers$", times=1000)
        api = StripeApi(API_KEY, server.url, max_rps=1000, max_retries=1)
        with pytest.raises(StripeFetchError) as failure:
            list(api.paginate("/v1/customers"))
    assert str(failure.value) == "GET /v1/customers failed after 1 retries: 200 with a body that is not JSON"
    said = _exception_texts(failure.value)
    assert "bytes)" in said  # the cause says how much came, and nothing of it
    assert "@example.com" not in said and '"object"' not in said
