"""The MRR engine, rule by rule (METRICS.md), on a real PostgreSQL with a real dbt build.

Every scenario bills one customer through the billing simulator (Stripe's own object shapes),
all scenarios are served together over Stripe's protocol, loaded by the dlt source, and built
by dbt with "today" frozen at NOW. Each scenario states the customer's movements, worked out
by hand in the comment beside it: (day, type, MRR before, MRR after), in USD unless stated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from saas_metrics.demo.billing import Account, Item
from saas_metrics.demo.store import Store
from tests.conftest import query
from tests.support.clock import ts
from tests.support.pipeline import dbt_build, load_stripe

NOW = ts("2025-12-15")
START = ts("2024-01-01")


@dataclass
class Scenario:
    name: str
    movements: list[tuple[str, str, str, str]]
    month_ends: dict[str, str] = field(default_factory=dict)

    @property
    def customer_id(self) -> str:
        return f"cus_{self.name}"


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, movements, month_ends=None):
    def register(build):
        SCENARIOS[name] = Scenario(name, movements, month_ends or {})
        SCENARIOS[name].build = build
        return build

    return register


class Catalogue:
    def __init__(self, acct: Account):
        a = self.acct = acct
        p = a.product("Product", START, id="prod_main")
        self.m100 = a.price(p, 10000, START, id="price_m100")
        self.m200 = a.price(p, 20000, START, id="price_m200")
        self.seat50 = a.price(p, 5000, START, id="price_seat50")
        self.y1200 = a.price(p, 120000, START, interval="year", id="price_y1200")
        self.q300 = a.price(p, 30000, START, interval="month", interval_count=3, id="price_q300")
        self.h600 = a.price(p, 60000, START, interval="month", interval_count=6, id="price_h600")
        self.w30 = a.price(p, 3000, START, interval="week", id="price_w30")
        self.free = a.price(p, 0, START, id="price_free")
        self.metered = a.price(p, 2, START, usage_type="metered", id="price_metered")
        self.storage10 = a.price(p, 1000, START, id="price_storage10")
        self.sso50 = a.price(p, 5000, START, id="price_sso50")
        self.packs = [a.price(p, 100 * i, START, id=f"price_pack{i:02d}") for i in range(1, 13)]
        self.eur100 = a.price(p, 10000, START, currency="eur", id="price_eur100")
        self.jpy10000 = a.price(p, 10000, START, currency="jpy", id="price_jpy10000")
        self.forever20 = a.coupon(START, percent_off=20.0, duration="forever", id="FOREVER20")
        self.repeating50 = a.coupon(START, percent_off=50.0, duration="repeating", duration_in_months=3, id="REP50")
        self.once10 = a.coupon(START, amount_off=1000, currency="usd", duration="once", id="ONCE10")
        self.y2400 = a.price(p, 240000, START, interval="year", id="price_y2400")
        self.m200_flexible = a.price(p, 20000, START, id="price_m200_flexible")  # apart from price_m200's counts
        seats = a.product("Seats", START, id="prod_seats")
        self.seat_addon50 = a.price(seats, 5000, START, id="price_seat_addon50")
        self.base50 = a.coupon(START, percent_off=50.0, duration="forever", id="BASE50", applies_to_products=[p["id"]])
        # $50 a month plus $10 a seat (one volume tier)
        self.tiered = a.price(
            p, 0, START, id="price_tiered", tiers=[{"up_to": None, "unit_amount": 1000, "flat_amount": 5000}]
        )
        # a deleted legacy plan: /v1/prices does not list it, subscriptions still bill it
        self.unlisted100 = a.price(p, 10000, START, id="price_unlisted100", listed=False)

    def customer(self, name: str, created: int, currency: str = "usd", card_expires: tuple[int, int] | None = None):
        return self.acct.customer(created, id=f"cus_{name}", currency=currency, card_expires=card_expires)


# --- billing periods ---------------------------------------------------------------------------------
@scenario("monthly", [("2025-01-10", "new", "0", "100")], {"2025-01": "100", "2025-12": "100"})
def _(c: Catalogue):
    # $100 a month from Jan 10: MRR 100 from Jan 10, renewals change nothing
    c.acct.subscribe(c.customer("monthly", ts("2025-01-10")), [Item(c.m100)], ts("2025-01-10")).finish()


@scenario("annual", [("2024-03-05", "new", "0", "100")], {"2024-03": "100", "2025-03": "100", "2025-12": "100"})
def _(c: Catalogue):
    # $1,200 a year = 1200 / 12 = 100 a month; the renewal on 2025-03-05 changes nothing
    c.acct.subscribe(c.customer("annual", ts("2024-03-05")), [Item(c.y1200)], ts("2024-03-05")).finish()


@scenario("quarterly", [("2025-02-01", "new", "0", "100")], {"2025-05": "100"})
def _(c: Catalogue):
    # $300 every 3 months = 300 / 3 = 100 a month
    c.acct.subscribe(c.customer("quarterly", ts("2025-02-01")), [Item(c.q300)], ts("2025-02-01")).finish()


@scenario("half_year", [("2025-01-20", "new", "0", "100")], {"2025-07": "100"})
def _(c: Catalogue):
    # $600 every 6 months = 600 / 6 = 100 a month
    c.acct.subscribe(c.customer("half_year", ts("2025-01-20")), [Item(c.h600)], ts("2025-01-20")).finish()


@scenario("weekly", [("2025-06-02", "new", "0", "130")], {"2025-06": "130"})
def _(c: Catalogue):
    # $30 a week x 52 / 12 = 130 a month
    c.acct.subscribe(c.customer("weekly", ts("2025-06-02")), [Item(c.w30)], ts("2025-06-02")).finish()


# --- changes ------------------------------------------------------------------------------------------
@scenario(
    "seats_up",
    [
        ("2025-01-15", "new", "0", "100"),
        ("2025-04-20", "expansion", "100", "250"),
        ("2025-07-15", "contraction", "250", "150"),
    ],
    {"2025-03": "100", "2025-04": "250", "2025-07": "150"},
)
def _(c: Catalogue):
    # 2 seats x $50 = 100; 5 seats on Apr 20 (prorated) = 250 at once; 3 seats from the Jul 15 renewal = 150
    sub = c.acct.subscribe(c.customer("seats_up", ts("2025-01-15")), [Item(c.seat50, 2)], ts("2025-01-15"))
    item = sub.items[0].id
    sub.change(ts("2025-04-20 10:00"), [Item(c.seat50, 5, id=item)])
    sub.change_at_renewal(ts("2025-07-01"), [Item(c.seat50, 3, id=item)])
    sub.finish()


@scenario("downgrade_at_renewal", [("2025-02-10", "new", "0", "200"), ("2025-05-10", "contraction", "200", "100")])
def _(c: Catalogue):
    # $200 plan; downgrade to $100 scheduled on May 1, effective at the May 10 renewal
    sub = c.acct.subscribe(c.customer("downgrade_at_renewal", ts("2025-02-10")), [Item(c.m200)], ts("2025-02-10"))
    sub.change_at_renewal(ts("2025-05-01"), [Item(c.m100, id=sub.items[0].id)])
    sub.finish()


@scenario(
    "upgrade_mid_period",
    [("2025-03-01", "new", "0", "100"), ("2025-03-16", "expansion", "100", "200")],
    {"2025-03": "200", "2025-04": "200"},
)
def _(c: Catalogue):
    # $100 -> $200 on Mar 16 with prorations (credit for unused $100 time, charge for remaining $200 time):
    # MRR moves on the day of the change at the new full rate; the Apr 1 renewal at $200 changes nothing
    sub = c.acct.subscribe(c.customer("upgrade_mid_period", ts("2025-03-01")), [Item(c.m100)], ts("2025-03-01"))
    sub.change(ts("2025-03-16 12:00"), [Item(c.m200, id=sub.items[0].id)])
    sub.finish()


# --- pending prorations (Stripe's default proration_behavior=create_prorations) ----------------------
@scenario(
    "pending_proration_annual",
    [("2025-02-01", "new", "0", "100"), ("2025-06-16", "expansion", "100", "200")],
    {"2025-05": "100", "2025-06": "200", "2025-11": "200"},
)
def _(c: Catalogue):
    # $1,200 a year (100 a month) upgraded to $2,400 a year (200 a month) on Jun 16 with create_prorations:
    # the prorations stay pending invoice items until the 2026-02-01 renewal, after today; MRR moves on the
    # day of the change all the same: -1200 / 12 + 2400 / 12 = +100
    sub = c.acct.subscribe(c.customer("pending_proration_annual", ts("2025-02-01")), [Item(c.y1200)], ts("2025-02-01"))
    sub.change(ts("2025-06-16 09:00"), [Item(c.y2400, id=sub.items[0].id)], proration_behavior="create_prorations")
    sub.finish()


@scenario(
    "pending_proration_invoiced",
    [("2025-03-05", "new", "0", "100"), ("2025-04-20", "expansion", "100", "200")],
    {"2025-04": "200", "2025-05": "200"},
)
def _(c: Catalogue):
    # 2 -> 4 seats x $50 on Apr 20, prorations pending until the May 5 renewal invoices them with the cycle
    # lines: +2 x 50 = +100 on Apr 20 (pending), nothing more on May 5 (the invoiced lines are the same
    # items, not counted twice)
    sub = c.acct.subscribe(
        c.customer("pending_proration_invoiced", ts("2025-03-05")), [Item(c.seat50, 2)], ts("2025-03-05")
    )
    sub.change(ts("2025-04-20 10:00"), [Item(c.seat50, 4, id=sub.items[0].id)], proration_behavior="create_prorations")
    sub.finish()


@scenario("pending_proration_deleted", [("2025-03-07", "new", "0", "100")], {"2025-04": "100", "2025-05": "100"})
def _(c: Catalogue):
    # 2 -> 4 seats on Apr 21 with pending prorations, undone on Apr 22: the items are deleted and the seats
    # set back to 2 without prorations; no movement at all, 2 x 50 = 100 throughout
    customer = c.customer("pending_proration_deleted", ts("2025-03-07"))
    sub = c.acct.subscribe(customer, [Item(c.seat50, 2)], ts("2025-03-07"))
    item = sub.items[0].id
    sub.change(ts("2025-04-21 10:00"), [Item(c.seat50, 4, id=item)], proration_behavior="create_prorations")
    sub.delete_pending_items(ts("2025-04-22 10:00"))
    sub.change(ts("2025-04-22 10:00"), [Item(c.seat50, 2, id=item)], prorate=False)
    sub.finish()


# --- proration values -------------------------------------------------------------------------------
@scenario(
    "discount_per_item",
    [("2025-03-03", "new", "0", "150"), ("2025-03-18", "expansion", "150", "250")],
    {"2025-03": "250"},
)
def _(c: Catalogue):
    # base $100 with 50% off restricted to its product (BASE50) = 50, plus 2 seats x $50 of another product,
    # not discounted = 100: 150. Two more seats on Mar 18 add their full price, 2 x 50 = 100 (the seats'
    # own discount, none; not a ratio blended over the subscription, 150 / 200, which would add 75)
    customer = c.customer("discount_per_item", ts("2025-03-03"))
    sub = c.acct.subscribe(customer, [Item(c.m100), Item(c.seat_addon50, 2)], ts("2025-03-03"), coupon=c.base50)
    sub.change(ts("2025-03-18 08:00"), [Item(c.m100, id=sub.items[0].id), Item(c.seat_addon50, 4, id=sub.items[1].id)])
    sub.finish()


@scenario(
    "tiered_february",
    [("2025-02-01", "new", "0", "80"), ("2025-02-15", "expansion", "80", "100")],
    {"2025-02": "100", "2025-03": "100"},
)
def _(c: Catalogue):
    # $50 + $10 a seat: 3 seats = 80 a month; 5 seats on Feb 15 00:00 = 100. The period Feb 1 - Mar 1 is
    # 28 days, 14 left: prorations -8000 x 14/28 = -4000 and +10000 x 14/28 = +5000 cents; a tiered price has
    # no unit amount, so each is scaled by the period (28 days) over its part (14): -80 + 100 = +20.
    # (Scaled by an average month of 30.44 days it would read +21.74.)
    sub = c.acct.subscribe(c.customer("tiered_february", ts("2025-02-01")), [Item(c.tiered, 3)], ts("2025-02-01"))
    sub.change(ts("2025-02-15"), [Item(c.tiered, 5, id=sub.items[0].id)])
    sub.finish()


def flexible_scenario(proration_discounts: str) -> None:
    """Flexible billing mode, $100 -> $200 on Apr 17 with 20% off forever: 80 -> 200 x 0.8 = 160, whichever way
    the proration discounts are shown: `itemized` (proration amounts gross with their 20% discount itemized,
    unit_amount_decimal null on the proration lines) or `included` (net proration amounts, discount amounts of
    0): the same MRR."""

    @scenario(
        f"flexible_{proration_discounts}",
        [("2025-04-02", "new", "0", "80"), ("2025-04-17", "expansion", "80", "160")],
        {"2025-04": "160"},
    )
    def _(c: Catalogue):
        customer = c.customer(f"flexible_{proration_discounts}", ts("2025-04-02"))
        sub = c.acct.subscribe(
            customer,
            [Item(c.m100)],
            ts("2025-04-02"),
            coupon=c.forever20,
            billing_mode="flexible",
            proration_discounts=proration_discounts,
        )
        sub.change(ts("2025-04-17 12:00"), [Item(c.m200_flexible, id=sub.items[0].id)])
        sub.finish()


flexible_scenario("itemized")


@scenario(
    "quantity_decimal_seats",
    [("2025-04-02", "new", "0", "250"), ("2025-04-17", "expansion", "250", "340")],
    {"2025-04": "340"},
)
def _(c: Catalogue):
    # flexible billing mode with a fractional quantity: the lines carry quantity_decimal ("2.5", "3.4") and, as real
    # Stripe does, `quantity` truncated (2, 3). 2.5 x $100 = 250; on Apr 17 the quantity goes to 3.4: the
    # prorations are valued at the full price, +3.4 x 100 - 2.5 x 100 = +90: 250 -> 340. Read from `quantity`
    # they would add +3 x 100 - 2 x 100 = +100.
    customer = c.customer("quantity_decimal_seats", ts("2025-04-02"))
    sub = c.acct.subscribe(customer, [Item(c.m100, quantity="2.5")], ts("2025-04-02"), billing_mode="flexible")
    sub.change(ts("2025-04-17 12:00"), [Item(c.m100, quantity="3.4", id=sub.items[0].id)])
    sub.finish()


flexible_scenario("included")


@scenario("unlisted_price", [("2025-02-20", "new", "0", "100")], {"2025-11": "100"})
def _(c: Catalogue):
    # $100 a month on a price /v1/prices no longer lists (a deleted legacy plan): still 100
    c.acct.subscribe(c.customer("unlisted_price", ts("2025-02-20")), [Item(c.unlisted100)], ts("2025-02-20")).finish()


# --- endings ------------------------------------------------------------------------------------------
@scenario(
    "cancel_at_period_end",
    [("2025-01-05", "new", "0", "100"), ("2025-07-05", "churn", "100", "0")],
    {"2025-06": "100", "2025-07": "0"},
)
def _(c: Catalogue):
    # cancellation asked on Jun 20 for the period end: MRR counts until the period ends on Jul 5
    sub = c.acct.subscribe(c.customer("cancel_at_period_end", ts("2025-01-05")), [Item(c.m100)], ts("2025-01-05"))
    sub.cancel(ts("2025-06-20"), at_period_end=True)
    sub.finish()


@scenario("immediate_cancel", [("2025-01-05", "new", "0", "100"), ("2025-04-12", "churn", "100", "0")])
def _(c: Catalogue):
    # canceled at once on Apr 12: churn on ended_at, mid-period
    sub = c.acct.subscribe(c.customer("immediate_cancel", ts("2025-01-05")), [Item(c.m100)], ts("2025-01-05"))
    sub.cancel(ts("2025-04-12 09:00"))
    sub.finish()


@scenario("past_due_dunning_cancel", [("2025-01-08", "new", "0", "100"), ("2025-05-29", "churn", "100", "0")])
def _(c: Catalogue):
    # the May 8 renewal fails; still MRR while past due; dunning cancels on May 29 (21 days < 30)
    sub = c.acct.subscribe(c.customer("past_due_dunning_cancel", ts("2025-01-08")), [Item(c.m100)], ts("2025-01-08"))
    sub.advance_to(ts("2025-05-01"))
    sub.fail_next_payment()
    sub.cancel(ts("2025-05-29"), reason="payment_failed")
    sub.finish()


@scenario("dunning_and_cancel_same_day", [("2025-07-02", "new", "0", "150"), ("2025-09-20", "churn", "150", "0")])
def _(c: Catalogue):
    # $100 and $50 on two subscriptions; the first's Sep 2 renewal fails and dunning cancels it on Sep 20
    # (payment_failed), the day the customer cancels the second: one churn of 150, voluntary (not every
    # subscription that fell that day fell for not being paid)
    customer = c.customer("dunning_and_cancel_same_day", ts("2025-07-02"))
    unpaid = c.acct.subscribe(customer, [Item(c.m100)], ts("2025-07-02"))
    kept_paying = c.acct.subscribe(customer, [Item(c.seat50)], ts("2025-07-02"))
    unpaid.advance_to(ts("2025-08-25"))
    unpaid.fail_next_payment()
    unpaid.cancel(ts("2025-09-20 08:00"), reason="payment_failed")
    kept_paying.cancel(ts("2025-09-20 17:00"))
    unpaid.finish()
    kept_paying.finish()


@scenario("recovered_by_retry", [("2025-02-12", "new", "0", "100")])
def _(c: Catalogue):
    # the Jun 12 renewal fails and Stripe's retry of the same card works on Jun 15 at 12:00 (3.5 days): no movement
    sub = c.acct.subscribe(c.customer("recovered_by_retry", ts("2025-02-12")), [Item(c.m100)], ts("2025-02-12"))
    sub.advance_to(ts("2025-06-01"))
    sub.fail_next_payment()
    sub.recover(ts("2025-06-15 12:00"))
    sub.finish()


@scenario("recovered_by_card_update", [("2025-03-13", "new", "0", "100")])
def _(c: Catalogue):
    # the Aug 13 renewal fails; the customer sets a new card on Aug 20 and Stripe's attempt then works (7 days)
    sub = c.acct.subscribe(c.customer("recovered_by_card_update", ts("2025-03-13")), [Item(c.m100)], ts("2025-03-13"))
    sub.advance_to(ts("2025-08-01"))
    sub.fail_next_payment()
    sub.recover(ts("2025-08-20"), card_update=True)
    sub.finish()


@scenario("in_dunning_today", [("2025-03-05", "new", "0", "100")])
def _(c: Catalogue):
    # the Dec 5 renewal fails; today (Dec 15) it is 10 days past due, within the 30 grace days: still 100, in dunning
    sub = c.acct.subscribe(c.customer("in_dunning_today", ts("2025-03-05")), [Item(c.m100)], ts("2025-03-05"))
    sub.advance_to(ts("2025-12-01"))
    sub.fail_next_payment()
    sub.finish()


@scenario("card_expiring", [("2025-03-01", "new", "0", "100"), ("2025-05-20", "expansion", "100", "200")])
def _(c: Catalogue):
    # $1,200 a year from Mar 1 (100 a month) and $100 a month from May 20; the default card expires at the end of
    # December 2025. The annual subscription's next renewal (2026-03-01) comes after that: 100 expiring, in March
    # 2026; the monthly one renews on Dec 20, while the card is still valid: not expiring (only the next renewal)
    customer = c.customer("card_expiring", ts("2025-03-01"), card_expires=(12, 2025))
    c.acct.subscribe(customer, [Item(c.y1200)], ts("2025-03-01")).finish()
    c.acct.subscribe(customer, [Item(c.m100)], ts("2025-05-20")).finish()


@scenario("past_due_marked_unpaid", [("2025-01-09", "new", "0", "100"), ("2025-06-24", "churn", "100", "0")])
def _(c: Catalogue):
    # the Jun 9 renewal fails; on Jun 24 the subscription is marked unpaid (invoice uncollectible):
    # MRR stops then (15 days < 30); later renewals are drafts and count nothing
    sub = c.acct.subscribe(c.customer("past_due_marked_unpaid", ts("2025-01-09")), [Item(c.m100)], ts("2025-01-09"))
    sub.advance_to(ts("2025-06-01"))
    sub.fail_next_payment()
    sub.mark_unpaid(ts("2025-06-24"))
    sub.finish()


@scenario("past_due_too_long", [("2025-01-11", "new", "0", "100"), ("2025-11-10", "churn", "100", "0")])
def _(c: Catalogue):
    # the Oct 11 renewal fails and so do the Nov 11 and Dec 11 ones; still past due today:
    # MRR stops 30 days after the first unpaid period began (Oct 11 + 30 days = Nov 10)
    sub = c.acct.subscribe(c.customer("past_due_too_long", ts("2025-01-11")), [Item(c.m100)], ts("2025-01-11"))
    sub.advance_to(ts("2025-10-01"))
    sub.fail_next_payment()
    sub.finish()


@scenario(
    "annual_renewal_unpaid",
    [("2024-11-20", "new", "0", "100"), ("2025-12-10", "churn", "100", "0")],
    {"2025-11": "100"},
)
def _(c: Catalogue):
    # $1,200 a year from 2024-11-20 (100 a month); the 2025-11-20 renewal fails, so past due and still
    # counting at the end of November; marked unpaid on Dec 10 (20 days < 30): churn then
    customer = c.customer("annual_renewal_unpaid", ts("2024-11-20"))
    sub = c.acct.subscribe(customer, [Item(c.y1200)], ts("2024-11-20"))
    sub.advance_to(ts("2025-11-01"))
    sub.fail_next_payment()
    sub.mark_unpaid(ts("2025-12-10"))
    sub.finish()


@scenario(
    "paused_collection",
    [
        ("2025-01-03", "new", "0", "100"),
        ("2025-05-03", "churn", "100", "0"),
        ("2025-07-03", "reactivation", "0", "100"),
    ],
)
def _(c: Catalogue):
    # collection paused on Apr 10 (invoices voided): MRR 0 from the first voided period (May 3);
    # resumed on Jun 20: MRR returns with the next collected period (Jul 3)
    sub = c.acct.subscribe(c.customer("paused_collection", ts("2025-01-03")), [Item(c.m100)], ts("2025-01-03"))
    sub.pause(ts("2025-04-10"), behavior="void")
    sub.resume(ts("2025-06-20"))
    sub.finish()


@scenario(
    "change_while_paused",
    [
        ("2025-01-03", "new", "0", "200"),
        ("2025-05-03", "churn", "200", "0"),
        ("2025-07-03", "reactivation", "0", "100"),
    ],
)
def _(c: Catalogue):
    # 4 seats x $50; paused Apr 10 (invoices voided): churn with the voided May 3 period;
    # down to 2 seats on May 20 while paused (prorations on a period that counts nothing: no
    # movement, and never below zero); resumed Jun 20: back at 2 x $50 with the Jul 3 period
    sub = c.acct.subscribe(c.customer("change_while_paused", ts("2025-01-03")), [Item(c.seat50, 4)], ts("2025-01-03"))
    item = sub.items[0].id
    sub.pause(ts("2025-04-10"), behavior="void")
    sub.change(ts("2025-05-20 10:00"), [Item(c.seat50, 2, id=item)])
    sub.resume(ts("2025-06-20"))
    sub.finish()


@scenario("still_paused", [("2025-02-04", "new", "0", "100"), ("2025-11-04", "churn", "100", "0")])
def _(c: Catalogue):
    # paused on Oct 20 and still paused: MRR 0 from Nov 4; flagged as paused, not canceled
    sub = c.acct.subscribe(c.customer("still_paused", ts("2025-02-04")), [Item(c.m100)], ts("2025-02-04"))
    sub.pause(ts("2025-10-20"), behavior="mark_uncollectible")
    sub.finish()


@scenario(
    "reactivation",
    [
        ("2025-01-06", "new", "0", "100"),
        ("2025-03-06", "churn", "100", "0"),
        ("2025-05-06", "reactivation", "0", "100"),
    ],
)
def _(c: Catalogue):
    # canceled Mar 6, back with a new subscription on May 6
    customer = c.customer("reactivation", ts("2025-01-06"))
    first = c.acct.subscribe(customer, [Item(c.m100)], ts("2025-01-06"))
    first.cancel(ts("2025-03-06"))
    first.finish()
    c.acct.subscribe(customer, [Item(c.m100)], ts("2025-05-06")).finish()


@scenario("pending_cancellation", [("2025-01-21", "new", "0", "100")], {"2025-12": "100"})
def _(c: Catalogue):
    # cancel at period end asked on Dec 10; the period ends Dec 21, after today: nothing changes yet
    sub = c.acct.subscribe(c.customer("pending_cancellation", ts("2025-01-21")), [Item(c.m100)], ts("2025-01-21"))
    sub.cancel(ts("2025-12-10"), at_period_end=True)
    sub.finish()


# --- trials and coupons -------------------------------------------------------------------------------
@scenario("trial_converted", [("2025-02-15", "new", "0", "100")], {"2025-02": "100"})
def _(c: Catalogue):
    # 14-day trial from Feb 1 ($0 invoice): MRR starts with the first paid period on Feb 15
    c.acct.subscribe(
        c.customer("trial_converted", ts("2025-02-01")), [Item(c.m100)], ts("2025-02-01"), trial_days=14
    ).finish()


@scenario("trial_lapsed", [])
def _(c: Catalogue):
    # a trial canceled before it ends never had MRR
    sub = c.acct.subscribe(
        c.customer("trial_lapsed", ts("2025-03-01")), [Item(c.m100)], ts("2025-03-01"), trial_days=14
    )
    sub.cancel(ts("2025-03-14"))
    sub.finish()


@scenario("coupon_percent_forever", [("2025-01-07", "new", "0", "80")])
def _(c: Catalogue):
    # 20% off forever: 100 - 20 = 80
    c.acct.subscribe(
        c.customer("coupon_percent_forever", ts("2025-01-07")), [Item(c.m100)], ts("2025-01-07"), coupon=c.forever20
    ).finish()


@scenario("coupon_percent_repeating", [("2025-01-08", "new", "0", "50"), ("2025-04-08", "expansion", "50", "100")])
def _(c: Catalogue):
    # 50% off for 3 months: 50 for the Jan 8, Feb 8, Mar 8 periods; full price from Apr 8 (expansion)
    c.acct.subscribe(
        c.customer("coupon_percent_repeating", ts("2025-01-08")), [Item(c.m100)], ts("2025-01-08"), coupon=c.repeating50
    ).finish()


@scenario("coupon_amount_once", [("2025-01-09", "new", "0", "90"), ("2025-02-09", "expansion", "90", "100")])
def _(c: Catalogue):
    # $10 off once: 90 for the first period, 100 from the first renewal
    c.acct.subscribe(
        c.customer("coupon_amount_once", ts("2025-01-09")), [Item(c.m100)], ts("2025-01-09"), coupon=c.once10
    ).finish()


# --- items and lines ----------------------------------------------------------------------------------
@scenario("multi_item", [("2025-02-12", "new", "0", "160")])
def _(c: Catalogue):
    # base $100 + storage $10 + SSO $50 = 160
    c.acct.subscribe(
        c.customer("multi_item", ts("2025-02-12")), [Item(c.m100), Item(c.storage10), Item(c.sso50)], ts("2025-02-12")
    ).finish()


@scenario("more_than_ten_items", [("2025-03-13", "new", "0", "78")])
def _(c: Catalogue):
    # twelve packs of $1..$12: 1 + 2 + ... + 12 = 78 (the invoice has 12 lines: two past Stripe's 10)
    c.acct.subscribe(
        c.customer("more_than_ten_items", ts("2025-03-13")), [Item(p) for p in c.packs], ts("2025-03-13")
    ).finish()


@scenario(
    "two_subscriptions",
    [
        ("2025-01-14", "new", "0", "100"),
        ("2025-03-14", "expansion", "100", "300"),
        ("2025-06-14", "contraction", "300", "200"),
    ],
)
def _(c: Catalogue):
    # a second subscription is expansion; ending one of two is contraction, not churn
    customer = c.customer("two_subscriptions", ts("2025-01-14"))
    first = c.acct.subscribe(customer, [Item(c.m100)], ts("2025-01-14"))
    second = c.acct.subscribe(customer, [Item(c.m200)], ts("2025-03-14"))
    first.cancel(ts("2025-06-14"))
    first.finish()
    second.finish()


@scenario("setup_fee", [("2025-02-16", "new", "0", "100")])
def _(c: Catalogue):
    # a one-off $500 setup fee is not MRR
    customer = c.customer("setup_fee", ts("2025-02-16"))
    sub = c.acct.subscribe(customer, [Item(c.m100)], ts("2025-02-16"))
    c.acct.one_off_invoice(customer, ts("2025-02-16"), 50000, subscription=sub)
    sub.finish()


@scenario("taxed_invoice", [("2025-02-17", "new", "0", "100")])
def _(c: Catalogue):
    # 20% VAT on top: MRR excludes tax
    c.acct.subscribe(
        c.customer("taxed_invoice", ts("2025-02-17")), [Item(c.m100)], ts("2025-02-17"), tax_percent=20.0
    ).finish()


@scenario("free_plan", [])
def _(c: Catalogue):
    # a $0 plan is never MRR
    c.acct.subscribe(c.customer("free_plan", ts("2025-01-18")), [Item(c.free)], ts("2025-01-18")).finish()


@scenario("metered_price", [("2025-02-19", "new", "0", "100")])
def _(c: Catalogue):
    # a metered price on the subscription is usage revenue, not MRR
    c.acct.subscribe(
        c.customer("metered_price", ts("2025-02-19")), [Item(c.m100), Item(c.metered, 500)], ts("2025-02-19")
    ).finish()


@scenario("last_day_2330", [("2025-01-31", "new", "0", "100")], {"2025-01": "100", "2025-02": "100"})
def _(c: Catalogue):
    # starts 23:30 UTC on Jan 31: the movement is on Jan 31 and counts in January's ending MRR;
    # renewals on Feb 28 23:30, Mar 31 23:30 change nothing
    c.acct.subscribe(
        c.customer("last_day_2330", ts("2025-01-31 23:30")), [Item(c.m100)], ts("2025-01-31 23:30")
    ).finish()


# --- currencies ---------------------------------------------------------------------------------------
# fx_rates seed: EUR 1.08 in 2024, 1.13 in 2025; JPY 0.00661 in 2024, 0.0067 in 2025
@scenario("eur_customer", [("2024-11-10", "new", "0", "108")], {"2024-12": "108", "2025-01": "113"})
def _(c: Catalogue):
    # EUR 100 a month: 100 x 1.08 = 108 when it starts; 100 x 1.13 = 113 at the end of January 2025
    customer = c.customer("eur_customer", ts("2024-11-10"), currency="eur")
    c.acct.subscribe(customer, [Item(c.eur100)], ts("2024-11-10")).finish()


@scenario("jpy_customer", [("2024-11-12", "new", "0", "66.1")], {"2024-12": "66.1", "2025-01": "67"})
def _(c: Catalogue):
    # JPY 10,000 a month (zero-decimal: 10000 is yen, not cents): 10000 x 0.00661 = 66.1; x 0.0067 = 67
    customer = c.customer("jpy_customer", ts("2024-11-12"), currency="jpy")
    c.acct.subscribe(customer, [Item(c.jpy10000)], ts("2024-11-12")).finish()


# --- the build ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scenario_store(tmp_path_factory):
    work = tmp_path_factory.mktemp("scenarios")
    store = Store(work / "stripe.sqlite")
    acct = Account(store, NOW, id_prefix="S")
    catalogue = Catalogue(acct)
    for item in SCENARIOS.values():
        item.build(catalogue)
    acct.flush()
    return store, work


@pytest.fixture(scope="module")
def warehouse(fresh_database, scenario_store):
    store, work = scenario_store
    url = fresh_database("scenarios")
    load_stripe(store, url, work, NOW)
    dbt_build(url, work, NOW)
    return url


def _movements(url: str, customer_id: str) -> list[tuple[str, str, str, str]]:
    rows = query(
        url,
        "select movement_date, movement_type, mrr_before, mrr_after from marts.mrr_movements "
        "where customer_id = %s order by movement_date",
        (customer_id,),
    )
    return [(str(d), t, _norm(b), _norm(a)) for d, t, b, a in rows]


def _norm(value) -> str:
    return format(Decimal(value).normalize(), "f")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_movements(warehouse, name):
    case = SCENARIOS[name]
    assert _movements(warehouse, case.customer_id) == [
        (d, t, _norm(Decimal(b)), _norm(Decimal(a))) for d, t, b, a in case.movements
    ]


@pytest.mark.parametrize("name", [n for n, s in SCENARIOS.items() if s.month_ends])
def test_scenario_month_end_mrr(warehouse, name):
    case = SCENARIOS[name]
    rows = dict(
        query(
            warehouse,
            "select to_char(month, 'YYYY-MM'), mrr from marts.customer_mrr_monthly where customer_id = %s",
            (case.customer_id,),
        )
    )
    for month, expected in case.month_ends.items():
        assert month in rows, f"{name}: no row for {month}"
        assert _norm(rows[month]) == _norm(Decimal(expected)), f"{name} {month}"


def test_churned_customer_has_no_rows_after_its_churn_month(warehouse):
    months = [
        m
        for (m,) in query(
            warehouse,
            "select to_char(month, 'YYYY-MM') from marts.customer_mrr_monthly "
            "where customer_id = 'cus_cancel_at_period_end' order by month",
        )
    ]
    assert months[0] == "2025-01" and months[-1] == "2025-07"
    assert len(months) == 7


def test_fx_impact_is_the_rate_change_on_foreign_customers(warehouse):
    # Dec 2024 -> Jan 2025: EUR 100 x (1.13 - 1.08) = 5; JPY 10000 x (0.0067 - 0.00661) = 0.9; USD: 0
    rows = dict(query(warehouse, "select to_char(month, 'YYYY-MM'), fx_impact from marts.mrr_monthly"))
    assert _norm(rows["2025-01"]) == "5.9"
    assert _norm(rows["2024-12"]) == "0"
    assert _norm(rows["2025-06"]) == "0"


def test_current_state_flags(warehouse):
    rows = {
        r[0]: r[1:]
        for r in query(
            warehouse,
            "select customer_id, mrr, is_paused, has_scheduled_cancellation, pending_churn_mrr "
            "from marts.customer_mrr_current",
        )
    }
    assert _norm(rows["cus_pending_cancellation"][0]) == "100"
    assert rows["cus_pending_cancellation"][2] is True
    assert _norm(rows["cus_pending_cancellation"][3]) == "100"
    assert rows["cus_still_paused"][1] is True and _norm(rows["cus_still_paused"][0]) == "0"
    assert rows["cus_monthly"][1:3] == (False, False)
    assert "cus_trial_lapsed" not in rows and "cus_free_plan" not in rows


# Each churn's cause (METRICS.md "Voluntary and involuntary churn"), by hand: involuntary when every
# subscription that fell that day was not paid. Dunning canceling (past_due_dunning_cancel, payment_failed),
# an invoice marked uncollectible after a failed payment (past_due_marked_unpaid, annual_renewal_unpaid) and
# the grace days passing on a failed payment (past_due_too_long) are involuntary; a cancellation, a paused
# collection (void or never attempted: paused_collection, change_while_paused, still_paused) and one of
# two subscriptions canceled by the customer the day dunning ended the other are voluntary.
CHURN_CAUSES = {
    "cancel_at_period_end": "voluntary",
    "immediate_cancel": "voluntary",
    "past_due_dunning_cancel": "involuntary",
    "dunning_and_cancel_same_day": "voluntary",
    "past_due_marked_unpaid": "involuntary",
    "past_due_too_long": "involuntary",
    "annual_renewal_unpaid": "involuntary",
    "paused_collection": "voluntary",
    "change_while_paused": "voluntary",
    "still_paused": "voluntary",
    "reactivation": "voluntary",
}


def test_churn_causes(warehouse):
    rows = query(
        warehouse,
        "select customer_id, movement_date, movement_type, churn_type from marts.mrr_movements "
        "where customer_id like 'cus\\_%%'",
    )
    causes = {(c, str(d)): k for c, d, t, k in rows if t == "churn"}
    expected = {
        (case.customer_id, day): CHURN_CAUSES[name]
        for name, case in SCENARIOS.items()
        for day, kind, _, _ in case.movements
        if kind == "churn"
    }
    assert causes == expected
    assert {k for _, _, t, k in rows if t != "churn"} == {None}


def test_churn_causes_in_the_waterfall(warehouse):
    # May 2025: past_due_dunning_cancel (100, involuntary), paused_collection (100) and change_while_paused
    # (200, both voluntary); November: still_paused (100, voluntary) and past_due_too_long (100, involuntary)
    waterfall = {
        str(month): tuple(_norm(v) for v in values[:2]) + tuple(values[2:])
        for month, *values in query(
            warehouse,
            "select month, voluntary_churned_mrr, involuntary_churned_mrr, voluntary_churned_customers, "
            "involuntary_churned_customers, starting_customers, starting_mrr from marts.mrr_monthly "
            "where month in ('2025-05-01', '2025-11-01')",
        )
    }
    assert {month: values[:4] for month, values in waterfall.items()} == {
        "2025-05-01": ("300", "100", 2, 1),
        "2025-11-01": ("100", "100", 1, 1),
    }
    kpis = {
        str(month): values
        for month, *values in query(
            warehouse,
            "select month, logo_churn_rate, voluntary_logo_churn_rate, involuntary_logo_churn_rate, "
            "voluntary_mrr_churn_rate, involuntary_mrr_churn_rate from marts.saas_kpis_monthly "
            "where month in ('2025-05-01', '2025-11-01')",
        )
    }
    for month, (voluntary, involuntary) in {"2025-05-01": (2, 1), "2025-11-01": (1, 1)}.items():
        customers, mrr = waterfall[month][4], waterfall[month][5]
        logo, voluntary_rate, involuntary_rate, voluntary_mrr, involuntary_mrr = kpis[month]
        assert voluntary_rate == round(Decimal(voluntary) / customers, 6), month
        assert involuntary_rate == round(Decimal(involuntary) / customers, 6), month
        assert logo == round(Decimal(voluntary + involuntary) / customers, 6), month
        assert voluntary_mrr == round(Decimal(waterfall[month][0]) / mrr, 6), month
        assert involuntary_mrr == round(Decimal(100) / mrr, 6), month


# Every failed payment's outcome (METRICS.md "Failed payments and recovery"), by hand: (first attempt's day,
# outcome, recovery method, days to recover). past_due_too_long's later renewals (Nov 11, Dec 11) fail after it
# churned involuntarily on Nov 10 and are churned too; dunning_and_cancel_same_day's customer canceled while past
# due (a voluntary churn): lost. Drafts (an unpaid subscription's later renewals) were never attempted.
FAILED_PAYMENTS = {
    "past_due_dunning_cancel": [("2025-05-08", "churned", None, None)],
    "dunning_and_cancel_same_day": [("2025-09-02", "lost", None, None)],
    "recovered_by_retry": [("2025-06-12", "recovered", "retry", "3.5")],
    "recovered_by_card_update": [("2025-08-13", "recovered", "card_update", "7")],
    "in_dunning_today": [("2025-12-05", "in_dunning", None, None)],
    "past_due_marked_unpaid": [("2025-06-09", "churned", None, None)],
    "past_due_too_long": [
        ("2025-10-11", "churned", None, None),
        ("2025-11-11", "churned", None, None),
        ("2025-12-11", "churned", None, None),
    ],
    "annual_renewal_unpaid": [("2025-11-20", "churned", None, None)],
}


def test_failed_payments(warehouse):
    rows = query(
        warehouse,
        "select customer_id, failed_at::date::text, outcome, recovery_method, days_to_recover "
        "from intermediate.int_failed_invoices order by customer_id, failed_at",
    )
    found: dict[str, list] = {}
    for customer, day, outcome, method, days in rows:
        found.setdefault(customer.removeprefix("cus_"), []).append(
            (day, outcome, method, None if days is None else _norm(days))
        )
    assert found == FAILED_PAYMENTS


def test_payment_recovery_by_month(warehouse):
    # June 2025: past_due_marked_unpaid (Jun 9, churned) and recovered_by_retry (Jun 12, 3.5 days), 100 each;
    # August: recovered_by_card_update (7 days); December: in_dunning_today (100 in dunning today) and
    # past_due_too_long's Dec 11 renewal (churned)
    rows = {
        str(month): tuple(_norm(v) if isinstance(v, Decimal) else v for v in values)
        for month, *values in query(
            warehouse,
            "select month, failed_invoices, failed_amount, failed_mrr, recovered_invoices, recovered_by_retry, "
            "recovered_by_card_update, recovered_mrr, churned_invoices, churned_mrr, in_dunning_invoices, "
            "mrr_in_dunning, lost_invoices, recovery_rate, median_days_to_recover from marts.payment_recovery "
            "where month in ('2025-06-01', '2025-08-01', '2025-12-01')",
        )
    }
    assert rows == {
        "2025-06-01": (2, "200", "200", 1, 1, 0, "100", 1, "100", 0, "0", 0, "0.5", "3.5"),
        "2025-08-01": (1, "100", "100", 1, 0, 1, "100", 0, "0", 0, "0", 0, "1", "7"),
        "2025-12-01": (2, "200", "200", 0, 0, 0, "0", 1, "100", 1, "100", 0, "0", None),
    }


def test_cards_expiring_before_the_next_renewal(warehouse):
    # card_expiring's annual subscription only (its monthly one renews while the card is valid); no other scenario
    # customer has a default card
    assert query(
        warehouse,
        "select month::text, expiring_customers, expiring_subscriptions, mrr_at_risk from marts.cards_expiring",
    ) == [("2026-03-01", 1, 1, Decimal("100.0000"))]


def test_waterfall_months_add_up_and_chain(warehouse):
    rows = query(
        warehouse,
        "select month, starting_mrr, new_mrr, expansion_mrr, reactivation_mrr, contraction_mrr, churned_mrr, "
        "fx_impact, ending_mrr from marts.mrr_monthly order by month",
    )
    previous_end = Decimal(0)
    for month, start, new, exp, react, contr, churn, fx, end in rows:
        assert start == previous_end, month
        assert end == start + new + exp + react - contr - churn + fx, month
        previous_end = end


def test_usage_revenue_is_published_separately(warehouse):
    # 500 units x $0.02 = $10 a month of usage for the metered scenario
    rows = dict(query(warehouse, "select to_char(month, 'YYYY-MM'), usage_revenue from marts.usage_revenue_monthly"))
    assert _norm(rows["2025-03"]) == "10"


def test_mrr_by_plan_splits_the_multi_item_customer(warehouse):
    rows = dict(
        query(
            warehouse,
            "select price_id, mrr from marts.mrr_by_plan where month = '2025-02-01' and price_id in "
            "('price_storage10', 'price_sso50')",
        )
    )
    assert _norm(rows["price_storage10"]) == "10" and _norm(rows["price_sso50"]) == "50"


def test_stripe_reconciliation_explains_every_gap(warehouse):
    # November 2025 (the last complete month before NOW), engine vs the recurring invoice lines that
    # cover Dec 1, per customer:
    # - past_due_too_long: the engine stopped on Nov 10 (30 days past due); the open Nov 11 - Dec 11
    #   invoice still counts 100 on the invoice side: -100, an unpaid renewal
    # - annual_renewal_unpaid: past due since Nov 20 and still counting 100 in the engine; its renewal
    #   invoice was marked uncollectible on Dec 10, so nothing on the invoice side: +100, an unpaid renewal
    # - pending_proration_annual: upgraded to 200 a month on Jun 16 with prorations still pending; the invoice
    #   side has the 2025-02-01 annual line, 1200 / 12 = 100: +100, a mid-period change
    from orchestration.defs.checks import reconcile

    month, customers = reconcile(warehouse)
    assert str(month) == "2025-11-01"
    gaps = {c.customer_id: (c.cause, _norm(c.gap)) for c in customers if c.cause != "matched"}
    assert gaps == {
        "cus_past_due_too_long": ("unpaid_renewal", "-100"),
        "cus_annual_renewal_unpaid": ("unpaid_renewal", "100"),
        "cus_pending_proration_annual": ("mid_period_change", "100"),
    }
    matched = {c.customer_id for c in customers if c.cause == "matched"}
    assert {"cus_monthly", "cus_annual", "cus_eur_customer", "cus_jpy_customer"} <= matched


def test_mrr_by_plan_counts_subscriptions_and_customers(warehouse):
    # price_m200 at the end of April 2025: downgrade_at_renewal (until its May 10 renewal),
    # upgrade_mid_period (from Mar 16) and two_subscriptions' second subscription (from Mar 14):
    # 3 x 200; at the end of May the downgrade has moved to price_m100: 2 x 200
    rows = {
        str(month): (_norm(mrr), subscriptions, customers)
        for month, mrr, subscriptions, customers in query(
            warehouse,
            "select month, mrr, subscriptions, customers from marts.mrr_by_plan "
            "where price_id = 'price_m200' and month in ('2025-04-01', '2025-05-01')",
        )
    }
    assert rows == {"2025-04-01": ("600", 3, 3), "2025-05-01": ("400", 2, 2)}


# --- incremental builds ---------------------------------------------------------------------------------
ENGINE_TABLES = (
    "intermediate.int_subscription_mrr_points",
    "intermediate.int_subscription_prices_mrr_changes",
    "intermediate.int_customer_mrr_movements",
    "intermediate.int_customer_churn_causes",
    "intermediate.int_customer_mrr_monthly",
    "intermediate.int_customer_price_mrr_monthly",
    "intermediate.int_customer_mrr_current",
    "marts.customer_mrr_monthly",
    "marts.mrr_monthly",
    "marts.mrr_by_plan",
    "marts.customer_mrr_current",
)


def _digest(url: str, table: str) -> tuple:
    row = "(to_jsonb(t) - 'engine_batch_at')::text"
    return query(url, f"select count(*), md5(coalesce(string_agg({row}, ',' order by {row}), '')) from {table} as t")[0]


def test_incremental_builds_equal_a_rebuild_as_days_pass(fresh_database, scenario_store):
    """METRICS.md "Incremental builds": the engine built day after day recomputes only the subscriptions the
    ledger lists, and ends up exactly where a rebuild from scratch does. The days chosen cross instants
    that no load brings: past_due_dunning_cancel's end (2025-05-29), still_paused's stale draft (2025-11-04),
    past_due_too_long's lapse 30 days after its unpaid period (2025-11-10); and between two builds an old
    paid invoice of cus_monthly is loaded again, voided (a change to history). Compared with a rebuild
    within a month (11-05 -> 11-12) and after a month has ended (11-12 -> 12-15)."""
    store, work = scenario_store
    url = fresh_database("incremental")
    load_stripe(store, url, work, NOW)
    select = "+mrr_monthly +mrr_by_plan +customer_mrr_current mrr_movements"
    days = ["2025-03-10", "2025-05-15", "2025-10-20", "2025-11-05 12:00", "2025-11-12"]
    for day in days:
        dbt_build(url, work, ts(day), select=select)
    (subscriptions,) = query(url, "select count(*) from staging.stg_stripe__subscriptions")[0]
    ledger = (
        "select is_full_batch, count(subscription_id) from intermediate.int_mrr_engine_batches "
        "where batch_at = (select max(batch_at) from intermediate.int_mrr_engine_batches) group by 1"
    )
    # 2025-11-05 -> 2025-11-12: the subscriptions with a period starting in between, or unpaid or draft
    # invoices in the grace window; not all of them
    (full, listed) = query(url, ledger)[0]
    assert not full and 0 < listed < subscriptions / 2
    listed_customers = query(
        url,
        "select customer_id from intermediate.int_mrr_engine_batches "
        "where batch_at = (select max(batch_at) from intermediate.int_mrr_engine_batches)",
    )
    assert ("cus_past_due_too_long",) in listed_customers
    assert _movements(url, "cus_past_due_too_long") == [
        ("2025-01-11", "new", "0", "100"),
        ("2025-11-10", "churn", "100", "0"),
    ]
    assert _movements(url, "cus_still_paused")[-1] == ("2025-11-04", "churn", "100", "0")
    # within a month (11-05 -> 11-12), unlisted customers keep their rows of the current month
    incremental = {table: _digest(url, table) for table in ENGINE_TABLES}
    dbt_build(url, work, ts(days[-1]), select=select, full_refresh=True)
    assert {table: _digest(url, table) for table in ENGINE_TABLES} == incremental
    # cus_monthly's February invoice voided: no MRR from its period start (2025-02-10) to the next one
    (invoice,) = query(
        url,
        "select invoice_id from staging.stg_stripe__invoices where customer_id = 'cus_monthly' "
        "and billing_reason = 'subscription_cycle' order by created_at limit 1",
    )[0]
    query(
        url,
        "update raw_stripe.invoices set status = 'void', synced_at = synced_at + interval '1 day', "
        "data = jsonb_set(data, '{status}', '\"void\"') where id = %s returning id",
        (invoice,),
    )
    dbt_build(url, work, NOW, select=select)
    assert _movements(url, "cus_monthly") == [
        ("2025-01-10", "new", "0", "100"),
        ("2025-02-10", "churn", "100", "0"),
        ("2025-03-10", "reactivation", "0", "100"),
    ]
    incremental = {table: _digest(url, table) for table in ENGINE_TABLES}
    dbt_build(url, work, NOW, select=select, full_refresh=True)
    assert {table: _digest(url, table) for table in ENGINE_TABLES} == incremental


class _Clock:
    """The Stripe source's clock, set by the test: loads stamped with the simulated day."""

    def __init__(self, now: int):
        self.now = now

    def time(self) -> float:
        return float(self.now)

    @staticmethod
    def monotonic() -> float:
        import time

        return time.monotonic()


def test_incremental_builds_follow_invoice_items(fresh_database, tmp_path, monkeypatch):
    """METRICS.md "Incremental builds" with invoice items: a pending proration loaded, then invoiced by a
    renewal (the item itself not loaded again: no event says it changed), and another deleted before
    invoicing (its invoiceitem.deleted event), across two incremental loads and builds; every engine table
    equals a rebuild. Then a price nothing can value makes the reconciliation fail."""
    from ingestion.stripe import plan as sync_plan

    clock = _Clock(ts("2025-06-10 12:00"))
    monkeypatch.setattr(sync_plan, "time", clock)  # the sync's started_at, which becomes its cursor
    store = Store(tmp_path / "stripe.sqlite")
    acct = Account(store, clock.now, id_prefix="I")
    product = acct.product("Seats", START, id="prod_seats")
    seat = acct.price(product, 5000, START, id="price_seats")
    other_seat = acct.price(product, 5000, START, id="price_other_seats")
    # cus_invoiced: 2 -> 4 seats x $50 on Jun 5, pending until the Jul 1 renewal
    invoiced = acct.subscribe(acct.customer(ts("2025-05-01"), id="cus_invoiced"), [Item(seat, 2)], ts("2025-05-01"))
    invoiced.change(ts("2025-06-05"), [Item(seat, 4, id=invoiced.items[0].id)], proration_behavior="create_prorations")
    invoiced.finish()
    # cus_undone: 2 -> 4 seats on Jun 9, pending; the items deleted on Jun 11 (nothing else changes: the
    # subscription is not loaded again, and its next renewal, Jul 3, is after the last build)
    undone = acct.subscribe(acct.customer(ts("2025-05-03"), id="cus_undone"), [Item(other_seat, 2)], ts("2025-05-03"))
    undone.change(
        ts("2025-06-09"), [Item(other_seat, 4, id=undone.items[0].id)], proration_behavior="create_prorations"
    )
    undone.finish()
    acct.flush()
    url = fresh_database("items")
    work = tmp_path / "work"
    select = "+mrr_monthly +mrr_by_plan +customer_mrr_current mrr_movements"
    load_stripe(store, url, work, clock.now)
    dbt_build(url, work, clock.now, select=select)
    # both pending: +2 x 50 = +100 on the day of each change
    assert _movements(url, "cus_invoiced") == [
        ("2025-05-01", "new", "0", "100"),
        ("2025-06-05", "expansion", "100", "200"),
    ]
    assert _movements(url, "cus_undone") == [
        ("2025-05-03", "new", "0", "100"),
        ("2025-06-09", "expansion", "100", "200"),
    ]

    clock.now = acct.now = ts("2025-07-02")
    undone.delete_pending_items(ts("2025-06-11"))
    undone.finish()
    invoiced.finish()  # the Jul 1 renewal invoices the pending items
    acct.flush()
    load_stripe(store, url, work, clock.now)
    dbt_build(url, work, clock.now, select=select)
    items = query(
        url,
        "select data -> 'parent' -> 'subscription_details' ->> 'subscription', data ->> 'invoice', "
        "coalesce(data ->> 'deleted', 'false') from raw_stripe.invoiceitems order by 1, 3",
    )
    # cus_invoiced's items still read pending in raw (nothing made the load fetch them again); cus_undone's
    # credit and debit were loaded deleted, from their invoiceitem.deleted events
    assert items == [(invoiced.id, None, "false")] * 2 + [(undone.id, None, "true")] * 2
    # cus_invoiced: the Jul 1 invoice carries the items (counted once, on Jun 5); cus_undone: no movement left
    assert _movements(url, "cus_invoiced") == [
        ("2025-05-01", "new", "0", "100"),
        ("2025-06-05", "expansion", "100", "200"),
    ]
    assert _movements(url, "cus_undone") == [("2025-05-03", "new", "0", "100")]
    incremental = {table: _digest(url, table) for table in ENGINE_TABLES}
    dbt_build(url, work, clock.now, select=select, full_refresh=True)
    assert {table: _digest(url, table) for table in ENGINE_TABLES} == incremental

    # no price list returns price_seats, no subscription item embeds it (as its price or its legacy plan), it
    # cannot be fetched: cus_invoiced's
    # June lines cannot be valued (no MRR on either side, so no gap would show it), and the reconciliation
    # says so; cus_undone (price_other_seats) still matches
    from orchestration.defs.checks import reconcile

    query(url, "delete from raw_stripe.prices where id = 'price_seats' returning id")
    query(url, "delete from raw_stripe.plans where id = 'price_seats' returning id")
    query(
        url,
        "update raw_stripe.subscription_items set data = data - 'price' - 'plan' "
        "where data -> 'price' ->> 'id' = 'price_seats' returning id",
    )
    dbt_build(url, work, clock.now, select=select + " int_stripe_reconciliation", full_refresh=True)
    month, customers = reconcile(url)
    assert str(month) == "2025-06-01"
    assert {c.customer_id: c.cause for c in customers} == {
        "cus_invoiced": "unpriced_lines",
        "cus_undone": "matched",
    }


def test_unpriced_lines_are_said_to_be_the_invoice_lines_not_the_mrr(fresh_database, tmp_path):
    """Issue 31.7: lines naming a price no load brought were reported as "its MRR is missing" when the engine's
    MRR was right. Here cus_renamed pays 100 a month on price_old from May 1 and moves, at the Jul 1 renewal, to
    price_new at the same 100 (a legacy plan, deleted since: nothing brings it). The engine keeps the level of
    the last period it could value (Jun 1, price_old): 100 at the end of July, right. The invoice side cannot
    value the Aug 1 - Sep 1 line of price_new: 0. What is unvalued is that line (100.00 usd billed), and the
    check says so; cus_plain (price_old throughout) matches."""
    from orchestration.defs.checks import reconciliation_result

    now = ts("2025-08-15")
    store = Store(tmp_path / "stripe.sqlite")
    acct = Account(store, now, id_prefix="U")
    product = acct.product("Plan", ts("2025-01-01"), id="prod_plan")
    old = acct.price(product, 10000, ts("2025-01-01"), id="price_old")
    new = acct.price(product, 10000, ts("2025-01-01"), id="price_new")
    renamed = acct.subscribe(acct.customer(ts("2025-05-01"), id="cus_renamed"), [Item(old)], ts("2025-05-01"))
    renamed.change_at_renewal(ts("2025-06-20"), [Item(new)])
    renamed.finish()
    acct.subscribe(acct.customer(ts("2025-05-03"), id="cus_plain"), [Item(old)], ts("2025-05-03")).finish()
    acct.flush()
    url = fresh_database("unpriced")
    work = tmp_path / "work"
    load_stripe(store, url, work, now)
    query(url, "delete from raw_stripe.prices where id = 'price_new' returning id")
    query(url, "delete from raw_stripe.plans where id = 'price_new' returning id")
    query(
        url,
        "update raw_stripe.subscription_items set data = data - 'price' - 'plan' "
        "where data -> 'price' ->> 'id' = 'price_new' returning id",
    )
    dbt_build(url, work, now, select="+mrr_monthly int_stripe_reconciliation")

    result = reconciliation_result(url)
    assert result.passed is False and result.severity.value == "ERROR"
    metadata = {key: value.value for key, value in result.metadata.items()}
    assert metadata["month"] == "2025-07-01"
    assert metadata["engine_mrr"] == 200.0 and metadata["invoice_lines_mrr"] == 100.0
    assert metadata["unpriced_customers"] == "cus_renamed (engine 100.0)"
    assert metadata["unvalued_lines"] == "1 invoice line of price_new, 100.00 usd billed for its period"
    assert metadata["gap_unpriced_lines"].startswith("100.0 over 1 customers: ")
    assert "MRR is missing" not in metadata["gap_unpriced_lines"]
    assert "The engine does not count them either" in metadata["gap_unpriced_lines"]
    assert metadata["customers_matched"] == 1


# --- methodology: stripe -----------------------------------------------------------------------------------
# METRICS.md "Methodology": with mrr_methodology 'stripe', the scenarios whose movements differ, by hand
STRIPE_MOVEMENTS = {
    # 50% off for 3 months is not a forever coupon: the full 100 from the start, no expansion on Apr 8
    "coupon_percent_repeating": [("2025-01-08", "new", "0", "100")],
    # $10 off once: not forever either, 100 from the start
    "coupon_amount_once": [("2025-01-09", "new", "0", "100")],
    # churn when the cancellation is made (Jun 20), not when the period ends (Jul 5)
    "cancel_at_period_end": [("2025-01-05", "new", "0", "100"), ("2025-06-20", "churn", "100", "0")],
    # the cancellation made on Dec 10 for the Dec 21 period end is a churn on Dec 10, before today
    "pending_cancellation": [("2025-01-21", "new", "0", "100"), ("2025-12-10", "churn", "100", "0")],
    # past due since Oct 11 and neither canceled nor marked unpaid: still counting (no 30-day limit)
    "past_due_too_long": [("2025-01-11", "new", "0", "100")],
}
ENGINE_SELECT = "+mrr_monthly +mrr_by_plan +customer_mrr_current mrr_movements"


@pytest.fixture(scope="module")
def stripe_warehouse(warehouse, scenario_store):
    """The scenarios' warehouse (built with the default methodology), switched to 'stripe' by an incremental
    build (every line valued again, a full batch), then rebuilt from scratch: (url, incremental, rebuilt
    digests). It changes the module's warehouse: every test of the default methodology comes before."""
    url = warehouse
    _, work = scenario_store
    dbt_build(url, work, NOW, select=ENGINE_SELECT, extra_vars={"mrr_methodology": "stripe"})
    incremental = {table: _digest(url, table) for table in ENGINE_TABLES}
    dbt_build(url, work, NOW, select=ENGINE_SELECT, full_refresh=True, extra_vars={"mrr_methodology": "stripe"})
    return url, incremental, {table: _digest(url, table) for table in ENGINE_TABLES}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_movements_stripe_methodology(stripe_warehouse, name):
    url, _, _ = stripe_warehouse
    expected = STRIPE_MOVEMENTS.get(name, SCENARIOS[name].movements)
    assert _movements(url, SCENARIOS[name].customer_id) == [
        (d, t, _norm(Decimal(b)), _norm(Decimal(a))) for d, t, b, a in expected
    ]


def test_stripe_methodology_differences_are_differences():
    # each difference is also a scenario of the default methodology, with other movements
    for name, movements in STRIPE_MOVEMENTS.items():
        assert name in SCENARIOS and SCENARIOS[name].movements != movements, name


def test_switching_methodology_equals_a_rebuild(stripe_warehouse):
    _, incremental, rebuilt = stripe_warehouse
    assert incremental == rebuilt


def test_unknown_methodology_stops_the_build(fresh_database, tmp_path):
    url = fresh_database("bad_methodology")
    with pytest.raises(AssertionError, match="var mrr_methodology must be 'chartmogul' or 'stripe', not 'baremetrics'"):
        dbt_build(url, tmp_path, NOW, select="int_mrr_engine_batches", extra_vars={"mrr_methodology": "baremetrics"})
