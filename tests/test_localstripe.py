"""Ingest from localstripe, a third-party Stripe emulator (PyPI), which answers in the legacy
API shape (plan on lines, subscription on the invoice, periods on the subscription)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import stripe

from tests.conftest import free_port, query
from tests.support.pipeline import dbt_build, load_from

KEY = "sk_test_localstripe"


@pytest.fixture(scope="module")
def localstripe():
    exe = shutil.which("localstripe") or str(Path(sys.executable).parent / "localstripe")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--from-scratch"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    client = stripe.StripeClient(KEY, base_addresses={"api": base})
    deadline = time.monotonic() + 30
    while True:  # poll until it answers
        try:
            client.raw_request("get", "/v1/customers", limit=1)
            break
        except stripe.APIConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("localstripe did not start")
            time.sleep(0.1)
    yield base, client
    proc.terminate()
    proc.wait(10)


def test_load_from_localstripe(localstripe, fresh_database, tmp_path):
    base, client = localstripe
    product = client.v1.products.create(params={"name": "Team"})
    client.v1.plans.create(
        params={"id": "plan_team", "product": product.id, "amount": 5000, "currency": "usd", "interval": "month"}
    )
    client.v1.plans.create(
        params={"id": "plan_team_annual", "product": product.id, "amount": 48000, "currency": "usd", "interval": "year"}
    )
    created = {}
    for n, (plan, quantity, cancel) in enumerate(
        [("plan_team", 3, False), ("plan_team_annual", 1, False), ("plan_team", 2, True)]
    ):
        card = client.v1.payment_methods.create(
            params={
                "type": "card",
                "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
            }
        )
        customer = client.v1.customers.create(
            params={
                "email": f"user{n}@example.com",
                "payment_method": card.id,
                "invoice_settings": {"default_payment_method": card.id},
            }
        )
        sub = client.v1.subscriptions.create(
            params={"customer": customer.id, "items": [{"plan": plan, "quantity": quantity}]}
        )
        if cancel:
            client.v1.subscriptions.cancel(sub.id)
        created[customer.id] = (sub.id, plan, quantity, cancel)

    url = fresh_database()
    load_from(base, KEY, url, tmp_path)

    assert {c for (c,) in query(url, "select id from raw_stripe.customers")} == set(created)
    subs = dict(query(url, "select id, status from raw_stripe.subscriptions"))
    assert subs == {sub: ("canceled" if cancel else "active") for sub, _, _, cancel in created.values()}
    assert query(url, "select count(*) from raw_stripe.invoices")[0][0] >= 3
    assert query(url, "select count(*) from raw_stripe.plans")[0][0] == 2

    # the legacy shape builds through staging into MRR: 3 x $50 = 150 and $480 / 12 = 40 today
    dbt_build(url, tmp_path, int(time.time()) + 60)
    rows = dict(query(url, "select customer_id, mrr from marts.customer_mrr_current"))
    by_plan = {created[c][1] + ("_canceled" if created[c][3] else ""): v for c, v in rows.items()}
    assert by_plan["plan_team"] == Decimal("150.0000")
    assert by_plan["plan_team_annual"] == Decimal("40.0000")
    lines = query(
        url,
        "select count(*) from staging.stg_stripe__invoice_lines "
        "where subscription_id is not null and price_id is not null and line_type = 'subscription'",
    )
    assert lines[0][0] >= 3
