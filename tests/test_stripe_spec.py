"""Every object the billing simulator and the Stripe-protocol server emit, checked against Stripe's OpenAPI spec of
the API version they speak (saas_metrics.demo.stripe_shape.API_VERSION; the spec's object schemas, compacted, in
tests/stripe_spec/): no field Stripe never sends, none it always sends left out, no null where it sends none, and
the types and enum values it sends. The same check passes on real recorded responses of that version, and the
spec file must be the one of that version. Offline: the spec is data in the repository."""

from __future__ import annotations

import json

import pytest

from ingestion.stripe import settings
from ingestion.stripe.helpers import StripeApi
from saas_metrics.demo.account import generate
from saas_metrics.demo.billing import Account
from saas_metrics.demo.server import StripeProtocolServer
from saas_metrics.demo.store import Store
from saas_metrics.demo.stripe_shape import API_VERSION
from tests.support.pipeline import API_KEY
from tests.support.recordings import recording
from tests.support.stripe_spec import problems, spec

RECORDED = ["pay/incomplete_dahlia", "pay/invoice_item_dahlia"]


def test_the_spec_file_is_of_the_version_the_simulator_speaks():
    assert spec(API_VERSION)["source"]["api_version"] == API_VERSION


def test_recorded_responses_of_the_version_conform():
    """Real responses in API_VERSION pass the check (what recordings show and the spec does not say is listed in
    tests/support/stripe_spec.py): the check and the spec file are right about real Stripe."""
    checked = {}
    for name in RECORDED:
        for interaction in recording(name)["interactions"]:
            if interaction["stripe_version"] == API_VERSION:
                obj = json.loads(interaction["body"])
                checked[obj["object"]] = checked.get(obj["object"], 0) + 1
                assert problems(obj, API_VERSION) == [], obj["id"]
    assert set(checked) == {"customer", "subscription", "invoice", "invoiceitem"}


def test_the_check_finds_what_stripe_would_not_send():
    item = next(
        json.loads(i["body"])
        for i in recording("pay/invoice_item_dahlia")["interactions"]
        if json.loads(i["body"])["object"] == "invoiceitem"
    )
    wrong = {**item, "created": item["date"], "proration": None, "quantity": "1"}
    del wrong["period"]
    assert sorted(problems(wrong, API_VERSION)) == [
        "invoiceitem.created: not in the spec",
        "invoiceitem.period: missing (always sent)",
        "invoiceitem.proration: null, not nullable",
        "invoiceitem.quantity: str '1' is not number",
    ]


def _served(store: Store, now: int) -> list[dict]:
    """Every object the server answers with as the Stripe source reads it: each list with the source's params,
    the pages of lines and items past the 10 embedded, events, and each object retrieved by id."""
    objects = []
    with StripeProtocolServer(store, api_key=API_KEY, now=now) as server:
        api = StripeApi(API_KEY, server.url, max_rps=5000)
        for path, params, object_type in settings.LISTS.values():
            listed = list(api.paginate(path, params))
            objects += listed
            for obj in listed[:3]:
                path_of = settings.RETRIEVE_PATHS[object_type].format(id=obj["id"])
                objects.append(api.get(path_of, **settings.RETRIEVE_PARAMS.get(object_type, {})))
            for obj in listed:
                if (obj.get("lines") or {}).get("has_more"):
                    objects += api.paginate(f"/v1/invoices/{obj['id']}/lines")
                if (obj.get("items") or {}).get("has_more"):
                    objects += api.paginate("/v1/subscription_items", {"subscription": obj["id"]})
        objects += api.paginate("/v1/events")
    return objects


def _assert_conform(objects: list[dict]) -> None:
    found = {}
    for obj in objects:
        for problem in problems(obj, API_VERSION):
            found.setdefault(problem.split(":")[0], (obj["id"], problem))
    assert list(found.values()) == []


@pytest.fixture(scope="module")
def scenario_objects(tmp_path_factory):
    """The MRR scenarios' account (tests/test_mrr_scenarios.py): every feature of the simulator, served."""
    from tests import test_mrr_scenarios as scenarios

    store = Store(tmp_path_factory.mktemp("spec") / "stripe.sqlite")
    acct = Account(store, scenarios.NOW, id_prefix="S")
    catalogue = scenarios.Catalogue(acct)
    for item in scenarios.SCENARIOS.values():
        item.build(catalogue)
    # and a credit note (no scenario has one)
    customer = acct.customer(scenarios.START, id="cus_spec_credit_note")
    acct.credit_note(acct.one_off_invoice(customer, scenarios.START, 5000), 2000, scenarios.START + 86400)
    acct.flush()
    return _served(store, scenarios.NOW)


def test_simulated_scenario_objects_conform(scenario_objects):
    kinds = {obj["object"] for obj in scenario_objects}
    assert kinds >= {"customer", "product", "price", "coupon", "subscription", "subscription_item", "invoice"}
    assert kinds >= {"line_item", "invoiceitem", "credit_note", "event"}
    _assert_conform(scenario_objects)


def test_the_demo_account_conforms(tmp_path):
    store = Store(tmp_path / "stripe.sqlite")
    now = 1_780_000_000
    generate(store, customers=25, months=6, seed=7, now=now, events_dir=tmp_path / "events")
    objects = _served(store, now)
    assert {obj["object"] for obj in objects} >= {"customer", "subscription", "invoice", "event"}
    _assert_conform(objects)
