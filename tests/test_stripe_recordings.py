"""Real Stripe, as recorded: responses of real test-mode accounts (tests/recordings/, provenance in
tests/recordings/PROVENANCE.md) served over Stripe's protocol exactly as recorded, loaded by the dlt source
and built by dbt, with each customer's MRR worked out by hand from the recorded objects."""

from __future__ import annotations

import json

import pytest

from saas_metrics.demo.billing import Account, Item
from saas_metrics.demo.server import StripeProtocolServer
from saas_metrics.demo.store import Store
from tests.conftest import n, query
from tests.support.clock import ts
from tests.support.pipeline import API_KEY, dbt_build, load_from, load_stripe
from tests.support.recordings import recorded_objects, recorded_store, recording

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


# --- the conformance suite: every recording through the whole pipeline -----------------------------------------
# Each recorded subscription, by the API version it was recorded in, with its customer's movements worked out by
# hand from the recorded invoices: (day, type, MRR before, MRR after), USD. "Small" is pay's test account's
# $25 a month price (small-monthly) and $250 a year (small-annual: 250 / 12 = 20.8333).
SWAPPED = [("new", "0", "20.8333")]
CONFORMANCE = {
    # monthly -> annual with always_invoice, classic billing mode: the swap's invoice has a -2500 credit for the
    # unused month (a proration, at the same instant) and a 25000 cycle line for the new year: the annual cycle
    # sets the level, the monthly price drops to zero there. Created and swapped the same day: one movement.
    "sub_1MzOlhKXBGcbgpbZEyl9nOSn": ("pay/swap_2022", "2022-11-15", "2023-04-21", SWAPPED),
    "sub_1NhegeKXBGcbgpbZmf5nFsT1": ("pay/swap_2023", "2023-08-16", "2023-08-21", SWAPPED),
    "sub_1PmHoXKXBGcbgpbZigefntss": ("pay/swap_2024", "2024-06-20", "2024-08-10", SWAPPED),
    # recorded after the swap only: the swap invoice alone (its annual cycle line): 20.8333
    "sub_1R6zwDKXBGcbgpbZ7elO6QCK": ("pay/swap_acacia", "2024-12-18.acacia", "2025-03-26", SWAPPED),
    "sub_1R706oKXBGcbgpbZMbw1outQ": ("pay/swap_acacia", "2025-02-24.acacia", "2025-03-26", SWAPPED),
    "sub_1RJFxBKXBGcbgpbZ55tXJ9Ro": ("pay/swap_basil", "2025-03-31.basil", "2025-04-29", SWAPPED),
    # flexible billing mode (the default since 2025-09-30): no cycle line for the new year, two proration lines,
    # `pricing.unit_amount_decimal` null: -1 x 2500 a month and +1 x 25000 a year at their full rates, 25 -> 20.8333
    "sub_1SRzqtKXBGcbgpbZ8kne01Xe": ("pay/swap_clover", "2025-10-29.clover", "2025-11-10", SWAPPED),
    # 10OFF (10% forever): 2500 - 250 = 22.5
    "sub_1SRzoCKXBGcbgpbZDYbXPugg": ("pay/coupon_clover", "2025-10-29.clover", "2025-11-10", [("new", "0", "22.5")]),
    # 10BUCKS ($10 off forever, the legacy single `discount`): 2500 - 1000 = 15
    "sub_JGwG3QcNFy8PWy": ("pay/coupon_2020", "2020-08-27", "2021-04-09", [("new", "0", "15")]),
    # $10 a month, quantity set to 5 on the item without prorations: 10 until a renewal bills 5 (none recorded)
    "sub_1SRznPKXBGcbgpbZrRvj2FVw": ("pay/quantity_clover", "2025-10-29.clover", "2025-11-10", [("new", "0", "10")]),
    # a card needing 3-D Secure: `incomplete`, its first invoice open. Never MRR (METRICS.md "When a subscription
    # counts"); before, +25 on the day and a churn 30 days later (the open invoice counted as past due)
    "sub_JGwHsv5GcPsajD": ("pay/incomplete_2020", "2020-08-27", "2021-04-09", []),
    "sub_1TGnF3KXBGcbgpbZ9Jnx79C5": ("pay/incomplete_dahlia", "2026-03-25.dahlia", "2026-03-30", []),
}
# Recorded shapes edited for a case no recording has (the edit said in full in the function that makes it)
EDITED = {
    # swap_clover with the 10% forever coupon of coupon_clover: 22.5 a month, then the year at 250 x 0.9 / 12 =
    # 18.75 (the two proration lines, `proration_discounts: included`, carry net amounts and discount amounts of 0:
    # valued at their full rate, 25000 a year, they need the discount in force on the subscription, not 20.8333)
    "sub_1SRzqtKXBGcbgpbZ8kne01Xe_c10": [("2025-11-10", "new", "0", "18.75")],
    # swap_basil with a `cancel_at` of 2025-06-01 passed and no `ended_at`: churn on 2025-06-01 (METRICS.md "When a
    # subscription counts", rule 3), where the loaded object alone says nothing ended
    "sub_1RJFxBKXBGcbgpbZ55tXJ9Ro_cancel": [
        ("2025-04-29", "new", "0", "20.8333"),
        ("2025-06-01", "churn", "20.8333", "0"),
    ],
    # coupon_2020 with a pause (void) whose `resumes_at` has passed: the invoices decide (the one recorded is
    # paid: 15), and the customer is not paused today
    "sub_JGwG3QcNFy8PWy_paused": [("2021-04-09", "new", "0", "15")],
    # coupon_clover with $5 of its line paid by credit balance (`pretax_credit_amounts`): a way of paying, not a
    # discount: 22.5 still
    "sub_1SRzoCKXBGcbgpbZDYbXPugg_credit": [("2025-11-10", "new", "0", "22.5")],
}
AS_OF = "2026-04-15"
# the API versions the project claims to read (METRICS.md "Inputs", ingestion/stripe/README.md), each recorded
CLAIMED_VERSIONS = {
    "2020-08-27",
    "2022-11-15",
    "2023-08-16",
    "2024-06-20",
    "2024-12-18.acacia",
    "2025-02-24.acacia",
    "2025-03-31.basil",
    "2025-10-29.clover",
    "2026-03-25.dahlia",
}


def _renamed(name: str, tag: str) -> list[dict]:
    """A recording's objects as another account's: every id the recording's objects have (and their customers')
    with `tag` appended wherever it appears, so an edited copy sits beside the recording itself."""
    objects = recorded_objects([name])
    ids = {obj["id"] for obj in objects} | {obj["customer"] for obj in objects if isinstance(obj.get("customer"), str)}
    ids -= {obj["id"] for obj in objects if obj["object"] in ("price", "plan", "product", "coupon")}
    text = json.dumps(objects)
    for object_id in ids:
        text = text.replace(f'"{object_id}"', f'"{object_id}{tag}"')
    return json.loads(text)


def _swap_clover_with_forever_coupon() -> list[dict]:
    """swap_clover's objects (ids tagged `_c10`) with coupon_clover's 10OFF discount: on the subscription
    (expanded, as listed), 250 off the first invoice's line, and on the swap's two proration lines as flexible
    mode's `included` shows it (net amounts, -2250 and +22500, discount amounts of 0). The coupon object (10%
    forever), which no recording holds, in the shape of /v1/coupons."""
    objects = _renamed("pay/swap_clover", "_c10")
    discount = next(o for o in recorded_objects(["pay/coupon_clover"]) if o["object"] == "discount")
    discount = {**discount, "customer": "cus_TOnR0Lf2celqmf_c10", "subscription": "sub_1SRzqtKXBGcbgpbZ8kne01Xe_c10"}
    for obj in objects:
        if obj["object"] == "subscription":
            obj["discounts"] = [discount]
        if obj["object"] != "invoice":
            continue
        for line in obj["lines"]["data"]:
            details = (line.get("parent") or {}).get("subscription_item_details") or {}
            if details.get("proration"):
                line["amount"] = line["amount"] * 9 // 10
                line["discount_amounts"] = [{"amount": 0, "discount": discount["id"]}]
            elif line["amount"] > 0:
                line["discount_amounts"] = [{"amount": line["amount"] // 10, "discount": discount["id"]}]
    coupon = {
        "id": "10OFF",
        "object": "coupon",
        "amount_off": None,
        "created": discount["start"],
        "currency": None,
        "duration": "forever",
        "duration_in_months": None,
        "livemode": False,
        "max_redemptions": None,
        "metadata": {},
        "name": "10% off",
        "percent_off": 10.0,
        "redeem_by": None,
        "times_redeemed": 1,
        "valid": True,
    }
    return [*objects, discount, coupon]


def _swap_basil_cancel_at_passed() -> list[dict]:
    """swap_basil's objects (ids tagged `_cancel`) with a `cancel_at` of 2025-06-01 and neither `ended_at` nor a
    status of `canceled`: loaded before Stripe processed the cancellation."""
    objects = _renamed("pay/swap_basil", "_cancel")
    for obj in objects:
        if obj["object"] == "subscription":
            obj.update(cancel_at=ts("2025-06-01"), canceled_at=ts("2025-05-20"))
    return objects


def _coupon_2020_paused() -> list[dict]:
    """coupon_2020's objects (ids tagged `_paused`) with collection paused (void) until 2021-05-01, passed."""
    objects = _renamed("pay/coupon_2020", "_paused")
    for obj in objects:
        if obj["object"] == "subscription":
            obj["pause_collection"] = {"behavior": "void", "resumes_at": ts("2021-05-01")}
    return objects


def _coupon_clover_with_credits() -> list[dict]:
    """coupon_clover's objects (ids tagged `_credit`) with $5 of the first line paid by the customer's credit
    balance (`pretax_credit_amounts`, API 2025-03-31 and later)."""
    objects = _renamed("pay/coupon_clover", "_credit")
    for obj in objects:
        if obj["object"] == "invoice":
            for line in obj["lines"]["data"]:
                line["pretax_credit_amounts"] = [
                    {
                        "amount": 500,
                        "credit_balance_transaction": "cbtxn_recorded",
                        "type": "credit_balance_transaction",
                    }
                ]
    return objects


@pytest.fixture(scope="module")
def recorded_warehouse(fresh_database, tmp_path_factory):
    work = tmp_path_factory.mktemp("recorded")
    names = sorted({name for name, *_ in CONFORMANCE.values()} | {"pay/invoice_item_dahlia"})
    store = recorded_store(work / "stripe.sqlite", names)
    for edited in (_swap_clover_with_forever_coupon, _swap_basil_cancel_at_passed, _coupon_2020_paused):
        store.put_many(edited())
    store.put_many(_coupon_clover_with_credits())
    url = fresh_database("recorded")
    now = ts(AS_OF)
    load_stripe(store, url, work, now)
    dbt_build(url, work, now)
    return url


def _movements(url: str, subscription_id: str) -> list[tuple]:
    """The movements of the subscription's customer, as the MRR scenarios read them."""
    from tests.test_mrr_scenarios import _movements as customer_movements

    (customer_id,) = query(url, "select customer_id from raw_stripe.subscriptions where id = %s", (subscription_id,))[0]
    return customer_movements(url, customer_id)


@pytest.mark.parametrize("subscription_id", list(CONFORMANCE))
def test_recorded_subscription_mrr(recorded_warehouse, subscription_id):
    name, version, day, movements = CONFORMANCE[subscription_id]
    assert version in recording(name)["source"]["api_versions"]
    assert _movements(recorded_warehouse, subscription_id) == [(day, *movement) for movement in movements]


@pytest.mark.parametrize("subscription_id", list(EDITED))
def test_edited_recording_mrr(recorded_warehouse, subscription_id):
    assert _movements(recorded_warehouse, subscription_id) == EDITED[subscription_id]


def test_passed_pause_and_passed_cancel_at_in_the_current_state(recorded_warehouse):
    rows = query(
        recorded_warehouse,
        "select subscriptions.id, current.is_paused, current.has_scheduled_cancellation, current.mrr "
        "from marts.customer_mrr_current as current "
        "join raw_stripe.subscriptions as subscriptions on subscriptions.customer_id = current.customer_id "
        "where subscriptions.id in ('sub_JGwG3QcNFy8PWy_paused', 'sub_1RJFxBKXBGcbgpbZ55tXJ9Ro_cancel') order by 1",
    )
    # the cancellation happened (no longer pending churn); the pause is over
    assert [(s, paused, scheduled, n(mrr)) for s, paused, scheduled, mrr in rows] == [
        ("sub_1RJFxBKXBGcbgpbZ55tXJ9Ro_cancel", False, False, "0"),
        ("sub_JGwG3QcNFy8PWy_paused", False, False, "15"),
    ]


def test_recordings_cover_every_claimed_api_version():
    recorded = {v for name, *_ in CONFORMANCE.values() for v in recording(name)["source"]["api_versions"]}
    assert {version for _, version, _, _ in CONFORMANCE.values()} == CLAIMED_VERSIONS
    assert CLAIMED_VERSIONS <= recorded


def test_recorded_objects_are_staged(recorded_warehouse):
    """Every recorded subscription, invoice and invoice item is loaded and staged, in every shape."""
    subscriptions = query(recorded_warehouse, "select subscription_id, status from staging.stg_stripe__subscriptions")
    assert {s for s, _ in subscriptions} >= set(CONFORMANCE)
    assert query(
        recorded_warehouse,
        "select count(*) from staging.stg_stripe__invoice_lines where subscription_id is not null and price_id is null",
    ) == [(0,)]
    items = query(recorded_warehouse, "select invoice_item_id, created_at from staging.stg_stripe__invoice_items")
    assert [(i, str(created)) for i, created in items] == [("ii_1TGnFEKXBGcbgpbZ4JzfQYx8", "2026-03-30 21:21:12+00:00")]


def test_simulated_lines_carry_quantities_as_recorded(tmp_path):
    """A line of the billing simulator has the recorded line's quantity fields (API 2026-03-25: `quantity` an
    integer, `quantity_decimal` the exact decimal string); a fractional quantity keeps its exact value in
    `quantity_decimal` and its integer part in `quantity`, as Stripe truncates it (before, `quantity` was null)."""
    recorded = next(o for o in recorded_objects(["pay/incomplete_dahlia"]) if o["object"] == "invoice")
    recorded_line = recorded["lines"]["data"][0]
    assert (recorded_line["quantity"], recorded_line["quantity_decimal"]) == (1, "1")
    store = Store(tmp_path / "stripe.sqlite")
    acct = Account(store, ts("2026-04-15"))
    price = acct.price(acct.product("Seats", ts("2026-01-01")), 10000, ts("2026-01-01"))
    customer = acct.customer(ts("2026-03-01"))
    acct.subscribe(customer, [Item(price, quantity="2.5")], ts("2026-03-01"), billing_mode="flexible").finish()
    acct.flush()
    lines = list(store.iter_type("line_item"))
    assert {(line["quantity"], line["quantity_decimal"], line["amount"]) for line in lines} == {(2, "2.5", 25000)}
