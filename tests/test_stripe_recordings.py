"""Real Stripe, as recorded: responses of real test-mode accounts (tests/recordings/, provenance in
tests/recordings/PROVENANCE.md) served over Stripe's protocol exactly as recorded, loaded by the dlt source
and built by dbt, with each customer's MRR worked out by hand from the recorded objects."""

from __future__ import annotations

import json

from saas_metrics.demo.server import StripeProtocolServer
from saas_metrics.demo.store import Store
from tests.conftest import query
from tests.support.pipeline import API_KEY, load_from
from tests.support.recordings import recording

DAY = 86400


def _recorded_invoice_item() -> dict:
    """The invoice item Stripe answered with in API 2026-03-25 (`date`, no `created`: as in every recording)."""
    for interaction in recording("pay/invoice_item_dahlia")["interactions"]:
        obj = json.loads(interaction["body"])
        if obj["object"] == "invoiceitem":
            return obj
    raise AssertionError("the recording has an invoice item")


def test_ten_thousand_recorded_invoice_items_load(tmp_path, fresh_database):
    """10,000 invoice items of the recorded shape (100 pages: the list is split into ranges of `date` after the
    first 3 pages, as Stripe's `created` filter on /v1/invoiceitems applies to `date`). Before, the split read
    `created`, which invoice items do not have: TypeError, and the whole Stripe load failed."""
    template = _recorded_invoice_item()
    assert "created" not in template and isinstance(template["date"], int)
    start = template["date"] - 30 * DAY
    store = Store(tmp_path / "stripe.sqlite")
    # three items per second: ties at every page and range boundary
    store.put_many({**template, "id": f"ii_recorded{i:05d}", "date": start + i // 3} for i in range(10_000))
    url = fresh_database()
    with StripeProtocolServer(store, api_key=API_KEY, now=template["date"] + DAY) as server:
        load_from(server.url, API_KEY, url, tmp_path)
        pages = server.stats.by_path["/v1/invoiceitems"]
    assert query(url, "select count(*), count(distinct id) from raw_stripe.invoiceitems") == [(10_000, 10_000)]
    # the raw table's `created` column is the item's `date`
    assert query(
        url, "select count(*) from raw_stripe.invoiceitems where created <> to_timestamp((data ->> 'date')::bigint)"
    ) == [(0,)]
    # read by chains over ranges of `date`: the 100 full pages and a partial page per range
    assert 100 <= pages < 150
