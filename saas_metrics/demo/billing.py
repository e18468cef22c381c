"""A small billing engine that issues Stripe-shaped objects the way Stripe Billing does.

Both the demo generator and the MRR scenario tests describe histories through it
("subscribe on Jan 31 23:30, upgrade on Mar 10 with prorations, cancel at period end"),
and it writes customers, prices, subscriptions, items, invoices with every line, credit
notes and events into a `Store` in the current API shape (2025-03-31 "basil" and later):
periods on subscription items, `invoice.parent.subscription_details`, line
`pricing.price_details` and `parent.subscription_item_details`, `discount_amounts`, `taxes`.

Rules it follows (Stripe's documented behaviour):
- billing periods step from the billing-cycle anchor by the price interval; month steps
  keep the anchor's day, clamped to the month's length (Jan 31 -> Feb 28 -> Mar 31);
- a trial issues a $0 invoice for the trial period, the first paid period starts at trial end;
- a mid-period change with prorations: a negative "Unused time on ..." line for each old item and
  a positive "Remaining time on ..." line for each new one, each prorated by the seconds left in
  the period; `always_invoice` invoices them at once, `create_prorations` (Stripe's default) leaves
  them as pending invoice items (`invoice: null`) that the next renewal invoices, unless deleted
  before (the change undone); proration lines carry the prorated per-unit amount in
  `pricing.unit_amount_decimal` (classic billing mode) or null (flexible mode);
- billing mode `flexible` with `proration_discounts` `included` (net proration amounts, discount
  amounts of 0) or `itemized` (gross amounts and the real discount amounts); lines of flexible
  subscriptions carry `quantity_decimal`;
- coupons: percent_off per line, amount_off spread over the invoice's lines; `once` applies to
  the first paid invoice, `repeating` to invoices starting within `duration_in_months` of
  redemption, `forever` to all; a coupon with `applies_to.products` discounts only their lines,
  and a subscription may have several; each is a discount object of its own (`di_...`, with the
  subscription, `start`, and `end` for a repeating coupon, null for once and forever), listed on the
  subscription while in force (Stripe removes a discount when it ends or a once coupon was used);
- volume-tiered prices (`tiers`): the tier the quantity falls in prices every unit, plus its flat amount;
- a price created `listed=False` is one the lists no longer return (a deleted legacy plan);
- tax rates add exclusive tax lines' `taxes`; invoice totals add them up.
"""

from __future__ import annotations

import calendar
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from saas_metrics.demo.store import Store
from saas_metrics.demo.stripe_shape import API_VERSION, complete


def add_interval(anchor: int, n: int, interval: str, count: int = 1) -> int:
    """The n-th period boundary after `anchor` (Stripe's calendar arithmetic)."""
    start = datetime.fromtimestamp(anchor, UTC)
    if interval in ("month", "year"):
        months = n * count * (12 if interval == "year" else 1)
        total = start.month - 1 + months
        year, month = start.year + total // 12, total % 12 + 1
        day = min(start.day, calendar.monthrange(year, month)[1])
        return int(start.replace(year=year, month=month, day=day).timestamp())
    days = {"week": 7, "day": 1}[interval] * n * count
    return anchor + days * 86400


class Ids:
    """Deterministic, Stripe-looking ids."""

    def __init__(self, prefix: str = ""):
        self.counters: dict[str, itertools.count] = {}
        self.prefix = prefix

    def __call__(self, kind: str) -> str:
        counter = self.counters.setdefault(kind, itertools.count(1))
        return f"{kind}_{self.prefix}{next(counter):08d}"


def quantity_text(quantity) -> str:
    """A quantity as Stripe's `quantity_decimal` writes it: the exact decimal, no trailing zeros ("2.5", "3")."""
    return format(Decimal(str(quantity)).normalize(), "f")


def price_amount(price: dict, quantity) -> int:
    """What `quantity` units of a price cost for a whole period (volume tiers: the tier it falls in), in exact
    decimal arithmetic (a fractional quantity, 2.5 seats, must not pick up binary rounding)."""
    quantity = Decimal(str(quantity))
    if price.get("_tiers"):
        for tier in price["_tiers"]:
            if tier["up_to"] is None or quantity <= tier["up_to"]:
                return round((tier.get("unit_amount") or 0) * quantity) + (tier.get("flat_amount") or 0)
    return round(price["unit_amount"] * quantity)


def _public(price: dict) -> dict:
    """A price as Stripe sends it: without the simulator's own keys (`_unlisted`, `_tiers`)."""
    return {k: v for k, v in price.items() if not k.startswith("_")}


@dataclass
class Item:
    price: dict
    quantity: int | Decimal | str = 1  # a fraction ("2.5") only in flexible billing mode
    id: str | None = None


@dataclass
class _Discount:
    coupon: dict
    start: int
    used: bool = False
    id: str = ""

    @property
    def end(self) -> int | None:
        """When a repeating coupon stops discounting (Stripe's `discount.end`; null for once and forever)."""
        if self.coupon["duration"] != "repeating":
            return None
        return add_interval(self.start, self.coupon["duration_in_months"], "month")

    def in_force(self, now: int) -> bool:
        """Still on the subscription: Stripe removes a discount once it ended or a `once` coupon was used."""
        end = self.end
        return not self.used if self.coupon["duration"] == "once" else end is None or end > now

    def covers(self, line: dict) -> bool:
        """A coupon restricted to some products discounts only their lines."""
        products = (self.coupon.get("applies_to") or {}).get("products")
        return not products or (line["pricing"]["price_details"] or {}).get("product") in products

    def applies(self, period_start: int) -> bool:
        duration = self.coupon["duration"]
        if duration == "forever":
            return True
        if duration == "once":
            return not self.used
        return period_start < self.end


class Account:
    """One Stripe account being simulated into a `Store`."""

    def __init__(self, store: Store, now: int, id_prefix: str = ""):
        self.store = store
        self.now = now
        self.ids = Ids(id_prefix)
        self.buffer: list[dict] = []
        self.events: list[dict] = []
        self.event_window_start = now - 31 * 86400

    # -- catalogue --------------------------------------------------------------------------
    def flush(self) -> None:
        if self.buffer:
            self.store.put_many(self.buffer)
            self.buffer = []
        if self.events:
            self.store.put_many(self.events)
            self.events = []

    def _put(self, obj: dict) -> dict:
        self.buffer.append(complete(obj))  # with the fields Stripe always sends (stripe_shape.py)
        if len(self.buffer) >= 5000:
            self.flush()
        return obj

    def event(self, type_: str, created: int, obj: dict, previous: dict | None = None) -> None:
        if created < self.event_window_start or created > self.now:
            return
        data = {"object": obj}
        if previous is not None:
            data["previous_attributes"] = previous
        self.events.append(
            {
                "id": self.ids("evt"),
                "object": "event",
                "type": type_,
                "created": created,
                "livemode": False,
                "api_version": API_VERSION,
                "data": data,
                "pending_webhooks": 0,
                "request": {"id": None, "idempotency_key": None},
            }
        )

    def product(self, name: str, created: int, id: str | None = None) -> dict:
        return self._put(
            {
                "id": id or self.ids("prod"),
                "object": "product",
                "name": name,
                "active": True,
                "created": created,
                "livemode": False,
                "metadata": {},
                "type": "service",
            }
        )

    def price(
        self,
        product: dict,
        unit_amount: int,
        created: int,
        *,
        currency: str = "usd",
        interval: str | None = "month",
        interval_count: int = 1,
        usage_type: str = "licensed",
        nickname: str | None = None,
        id: str | None = None,
        tax_behavior: str = "exclusive",
        tiers: list[dict] | None = None,
        listed: bool = True,
    ) -> dict:
        """tiers: volume tiers [{"up_to": 10 or None, "unit_amount": ..., "flat_amount": ...}];
        listed=False: left out of /v1/prices (still retrievable by id)."""
        recurring = None
        if interval:
            recurring = {
                "interval": interval,
                "interval_count": interval_count,
                "usage_type": usage_type,
                "meter": None,
                "trial_period_days": None,
            }
        price = self._put(
            {
                "id": id or self.ids("price"),
                "object": "price",
                "active": True,
                "billing_scheme": "tiered" if tiers else "per_unit",
                "created": created,
                "currency": currency,
                "livemode": False,
                "lookup_key": None,
                "metadata": {},
                "nickname": nickname,
                "product": product["id"],
                "recurring": recurring,
                "tax_behavior": tax_behavior,
                "tiers_mode": "volume" if tiers else None,
                # `tiers` is sent only when expanded (`expand[]=tiers`), which the source does not ask for
                "_tiers": tiers,
                "transform_quantity": None,
                "type": "recurring" if interval else "one_time",
                "unit_amount": None if tiers else unit_amount,
                "unit_amount_decimal": None if tiers else str(unit_amount),
            }
        )
        if not listed:
            price["_unlisted"] = True
        return price

    def coupon(
        self,
        created: int,
        *,
        percent_off: float | None = None,
        amount_off: int | None = None,
        currency: str | None = None,
        duration: str = "forever",
        duration_in_months: int | None = None,
        id: str | None = None,
        applies_to_products: list[str] | None = None,
    ) -> dict:
        return self._put(
            {
                "id": id or self.ids("coupon"),
                "object": "coupon",
                "created": created,
                "livemode": False,
                "percent_off": percent_off,
                "amount_off": amount_off,
                "currency": currency if amount_off else None,
                "duration": duration,
                "duration_in_months": duration_in_months,
                "metadata": {},
                "name": f"{percent_off}% off" if percent_off else f"{amount_off} off",
                "valid": True,
                # sent when expanded (the source asks for it; the server leaves it out otherwise)
                **({"applies_to": {"products": applies_to_products}} if applies_to_products else {}),
            }
        )

    def customer(
        self,
        created: int,
        *,
        email: str | None = None,
        currency: str = "usd",
        country: str = "US",
        metadata: dict | None = None,
        id: str | None = None,
        card_expires: tuple[int, int] | None = None,
    ) -> dict:
        """card_expires: (month, year) of a default card (a payment_method the customer names by id)."""
        cid = id or self.ids("cus")
        payment_method = None
        if card_expires is not None:
            payment_method = self._put(
                {
                    "id": f"pm_{cid}",
                    "object": "payment_method",
                    "created": created,
                    "customer": cid,
                    "type": "card",
                    "card": {
                        "brand": "visa",
                        "last4": "4242",
                        "exp_month": card_expires[0],
                        "exp_year": card_expires[1],
                    },
                }
            )["id"]
        obj = self._put(
            {
                "id": cid,
                "object": "customer",
                "created": created,
                "currency": currency,
                "email": email or f"{cid}@example.com",
                "name": None,
                "livemode": False,
                "delinquent": False,
                "address": {
                    "country": country,
                    "city": None,
                    "line1": None,
                    "line2": None,
                    "postal_code": None,
                    "state": None,
                },
                "metadata": metadata or {},
                "invoice_settings": {
                    "default_payment_method": payment_method,
                    "custom_fields": None,
                    "footer": None,
                    "rendering_options": None,
                },
                "balance": 0,
            }
        )
        self.event("customer.created", created, obj)
        return obj

    def subscribe(self, customer: dict, items: list[Item], start: int, **kwargs) -> Subscription:
        return Subscription(self, customer, items, start, **kwargs)

    def one_off_invoice(
        self,
        customer: dict,
        created: int,
        amount: int,
        description: str = "Setup fee",
        currency: str | None = None,
        subscription: Subscription | None = None,
    ) -> dict:
        currency = currency or customer["currency"]
        invoice_id = self.ids("in")
        line = {
            "id": self.ids("il"),
            "object": "line_item",
            "invoice": invoice_id,
            "amount": amount,
            "currency": currency,
            "description": description,
            "discount_amounts": [],
            "discountable": True,
            "discounts": [],
            "livemode": False,
            "metadata": {},
            "period": {"start": created, "end": created},
            "quantity": 1,
            "quantity_decimal": "1",
            "pretax_credit_amounts": [],
            "taxes": [],
            "subtotal": amount,
            "pricing": None,  # no price: an amount alone
            "parent": {
                "type": "invoice_item_details",
                "subscription_item_details": None,
                "invoice_item_details": {
                    "invoice_item": self.ids("ii"),
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": subscription.id if subscription else None,
                },
            },
        }
        invoice = _invoice(
            invoice_id,
            customer,
            currency,
            created,
            created,
            created,
            [line],
            "manual",
            subscription.id if subscription else None,
            "paid",
        )
        self._put(invoice)
        self._put(line)
        return invoice

    def credit_note(self, invoice: dict, amount: int, created: int, reason: str = "order_change") -> dict:
        return self._put(
            {
                "id": self.ids("cn"),
                "object": "credit_note",
                "amount": amount,
                "created": created,
                "currency": invoice["currency"],
                "customer": invoice["customer"],
                "invoice": invoice["id"],
                "livemode": False,
                "reason": reason,
                "status": "issued",
                "type": "post_payment",
                "subtotal": amount,
                "total": amount,
                "effective_at": created,
                "discount_amount": 0,
                "discount_amounts": [],
                "memo": None,
                "metadata": {},
                "refunds": [],
                "lines": {"object": "list", "data": [], "has_more": False, "url": "/v1/credit_notes/x/lines"},
            }
        )


def _invoice(
    invoice_id,
    customer,
    currency,
    created,
    period_start,
    period_end,
    lines,
    billing_reason,
    subscription_id,
    status,
) -> dict:
    subtotal = sum(line["amount"] for line in lines)
    discount = sum(sum(d["amount"] for d in line["discount_amounts"]) for line in lines)
    tax = sum(sum(t["amount"] for t in line["taxes"] if t["tax_behavior"] == "exclusive") for line in lines)
    total = subtotal - discount + tax
    paid = status == "paid"
    return {
        "id": invoice_id,
        "object": "invoice",
        "customer": customer["id"],
        "currency": currency,
        "created": created,
        "period_start": period_start,
        "period_end": period_end,
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "status": status,
        "livemode": False,
        "attempted": status != "draft",
        "attempt_count": 1,
        "subtotal": subtotal,
        "subtotal_excluding_tax": subtotal,
        "total_discount_amounts": [{"amount": discount, "discount": "di_x"}] if discount else [],
        "total_taxes": [
            {
                "amount": tax,
                "tax_behavior": "exclusive",
                "tax_rate_details": {"tax_rate": "txr_vat"},
                "taxability_reason": "standard_rated",
                "taxable_amount": sum(t["taxable_amount"] for line in lines for t in line["taxes"]),
                "type": "tax_rate_details",
            }
        ]
        if tax
        else [],
        "total": total,
        "total_excluding_tax": subtotal - discount,
        "amount_due": total,
        "amount_paid": total if paid else 0,
        "amount_remaining": 0 if paid else total,
        "customer_email": customer.get("email"),
        "description": None,
        "metadata": {},
        "parent": {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"subscription": subscription_id, "metadata": {}},
        }
        if subscription_id
        else None,
        "status_transitions": {
            "finalized_at": created if status != "draft" else None,
            "paid_at": created if paid else None,
            "marked_uncollectible_at": None,
            "voided_at": None,
        },
        "due_date": None,
        "effective_at": created,
    }


@dataclass
class Subscription:
    """A subscription being billed through time. Call methods in time order, then `finish()`."""

    account: Account
    customer: dict
    items: list[Item]
    start: int
    trial_days: int = 0
    coupon: dict | None = None
    tax_percent: float = 0.0
    collection: str = "charge_automatically"
    coupons: list[dict] = field(default_factory=list)  # more coupons (several discounts)
    billing_mode: str = "classic"  # or "flexible"
    proration_discounts: str = "included"  # flexible mode: "included" (net amounts) or "itemized"
    id: str = ""
    anchor: int = 0
    status: str = "active"
    ended_at: int | None = None
    canceled_at: int | None = None
    cancellation_reason: str = "cancellation_requested"  # Stripe's cancellation_details.reason
    cancel_at: int | None = None
    cancel_at_period_end: bool = False
    pause_collection: dict | None = None
    trial_end: int | None = None
    period_start: int = 0
    period_end: int = 0
    discounts: list[_Discount] = field(default_factory=list)
    # create_prorations: (invoice item, the line the next invoice will carry) until invoiced or deleted
    pending: list[tuple[dict, dict]] = field(default_factory=list)
    # what the next renewal uses (downgrade at renewal)
    next_items: list[Item] | None = None
    pending_fail: bool = False
    open_invoices: list[dict] = field(default_factory=list)
    _cycle: int = 0
    _out: list[dict] = field(default_factory=list)

    def __post_init__(self):
        acct = self.account
        self.id = self.id or acct.ids("sub")
        for item in self.items:
            item.id = item.id or acct.ids("si")
        self.discounts = [
            _Discount(c, self.start, id=acct.ids("di")) for c in ([self.coupon] if self.coupon else []) + self.coupons
        ]
        for d in self.discounts:  # the discount objects a subscription's or invoice's `discounts` expand to
            acct._put(
                {
                    "id": d.id,
                    "object": "discount",
                    "start": d.start,
                    "end": d.end,
                    "customer": self.customer["id"],
                    "subscription": self.id,
                    "subscription_item": None,
                    "invoice": None,
                    "invoice_item": None,
                    "checkout_session": None,
                    "promotion_code": None,
                    "source": {"type": "coupon", "coupon": d.coupon["id"]},
                }
            )
        self.anchor = self.start
        if self.trial_days:
            self.trial_end = self.start + self.trial_days * 86400
            self.status = "trialing"
            self.anchor = self.trial_end
            self.period_start, self.period_end = self.start, self.trial_end
            self._issue(
                self.start,
                [
                    self._line(
                        it,
                        self.start,
                        self.trial_end,
                        amount=0,
                        description=f"Trial period for {it.price['id']}",
                    )
                    for it in self.items
                ],
                "subscription_create",
            )
        else:
            self._begin_period(self.start, "subscription_create")
        acct.event("customer.subscription.created", self.start, {"id": self.id, "object": "subscription"})

    # -- billing primitives ---------------------------------------------------------------------
    @property
    def interval(self) -> tuple[str, int]:
        recurring = self.items[0].price["recurring"]
        return recurring["interval"], recurring["interval_count"]

    def _boundary(self, n: int) -> int:
        interval, count = self.interval
        return add_interval(self.anchor, n, interval, count)

    def _line(
        self,
        item: Item,
        start: int,
        end: int,
        amount: int | None = None,
        proration: bool = False,
        description: str | None = None,
        quantity: int | None = None,
    ) -> dict:
        price = item.price
        qty = item.quantity if quantity is None else quantity
        if amount is None:
            amount = price_amount(price, qty)
        unit_amount_decimal = price["unit_amount_decimal"]
        if proration:
            # real Stripe: null in flexible mode; the prorated, signed per-unit amount in classic mode
            unit_amount_decimal = (
                None if self.billing_mode == "flexible" else str(round(amount / max(Decimal(str(qty)), 1)))
            )
        line = {
            "id": self.account.ids("il"),
            "object": "line_item",
            "invoice": None,
            "amount": amount,
            "currency": price["currency"],
            "description": description or f"{qty} x {price['id']}",
            "discount_amounts": [],
            "discountable": True,
            "discounts": [],
            "livemode": False,
            "metadata": {},
            "period": {"start": start, "end": end},
            # as real Stripe (API 2026-03-25): `quantity` is the integer part, `quantity_decimal` the exact one
            "quantity": int(Decimal(str(qty))),
            "pretax_credit_amounts": [],
            "taxes": [],
            "subtotal": amount,
            "pricing": {
                "type": "price_details",
                "price_details": {"price": price["id"], "product": price["product"]},
                "unit_amount_decimal": unit_amount_decimal,
            },
            "parent": {
                "type": "subscription_item_details",
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": proration,
                    "proration_details": {"credited_items": None},
                    "subscription": self.id,
                    "subscription_item": item.id,
                },
            },
        }
        line["quantity_decimal"] = quantity_text(qty)  # every line of API 2026-03-25 carries it
        return line

    def _apply_discount(self, lines: list[dict], period_start: int, prorations: bool = False) -> None:
        for d in self.discounts:
            if d.applies(period_start):
                self._apply_one_discount(d, lines, prorations)
        if prorations and self.billing_mode == "flexible" and self.proration_discounts == "included":
            # net proration amounts, discount amounts of 0
            for ln in lines:
                off = sum(x["amount"] for x in ln["discount_amounts"])
                ln["amount"] -= off
                ln["subtotal"] = ln["amount"]
                ln["discount_amounts"] = [{**x, "amount": 0} for x in ln["discount_amounts"]]

    def _apply_one_discount(self, d: _Discount, lines: list[dict], prorations: bool) -> None:
        coupon = d.coupon
        discount_id = d.id
        eligible = [ln for ln in lines if (ln["amount"] > 0 or prorations) and d.covers(ln)]
        if coupon["percent_off"]:
            for ln in eligible:
                off = round(ln["amount"] * coupon["percent_off"] / 100)
                if off:
                    ln["discount_amounts"] = [*ln["discount_amounts"], {"amount": off, "discount": discount_id}]
        elif coupon["amount_off"]:
            total = sum(ln["amount"] for ln in eligible if ln["amount"] > 0)
            remaining = min(coupon["amount_off"], total)
            positive = [ln for ln in eligible if ln["amount"] > 0]
            for i, ln in enumerate(positive):
                off = remaining if i == len(positive) - 1 else round(coupon["amount_off"] * ln["amount"] / total)
                off = min(off, remaining, ln["amount"])
                remaining -= off
                if off:
                    ln["discount_amounts"] = [*ln["discount_amounts"], {"amount": off, "discount": discount_id}]
        if any(ln["amount"] > 0 for ln in eligible) and not prorations:
            d.used = True

    def _apply_tax(self, lines: list[dict]) -> None:
        if not self.tax_percent:
            return
        for ln in lines:
            base = ln["amount"] - sum(d["amount"] for d in ln["discount_amounts"])
            tax = round(base * self.tax_percent / 100)
            if tax:
                ln["taxes"] = [
                    {
                        "amount": tax,
                        "tax_behavior": "exclusive",
                        "taxability_reason": "standard_rated",
                        "taxable_amount": base,
                        "type": "tax_rate_details",
                        "tax_rate_details": {"tax_rate": "txr_vat"},
                    }
                ]

    def _issue(
        self,
        created: int,
        lines: list[dict],
        reason: str,
        status: str | None = None,
        prorations: bool = False,
    ) -> dict:
        acct = self.account
        period_start = min(ln["period"]["start"] for ln in lines)
        if not prorations:
            self._apply_discount(lines, period_start)
        else:
            self._apply_discount(lines, period_start, prorations=True)
        self._apply_tax(lines)
        invoice_id = acct.ids("in")
        for ln in lines:
            ln["invoice"] = invoice_id
        if status is None:
            status = "paid"
            if self.pending_fail and sum(ln["amount"] for ln in lines) > 0:
                status = "open"
                self.pending_fail = False
            elif self.status == "past_due":  # Stripe keeps invoicing; these fail too
                status = "open"
            elif self.status == "unpaid":  # an unpaid subscription's invoices stay drafts
                status = "draft"
            if self.pause_collection:
                status = {"void": "void", "keep_as_draft": "draft", "mark_uncollectible": "uncollectible"}[
                    self.pause_collection["behavior"]
                ]
            if all(ln["amount"] == 0 for ln in lines):
                status = "paid"
        invoice = _invoice(
            invoice_id,
            self.customer,
            lines[0]["currency"],
            created,
            period_start,
            max(ln["period"]["end"] for ln in lines),
            lines,
            reason,
            self.id,
            status,
        )
        invoice["discounts"] = sorted({d["discount"] for ln in lines for d in ln["discount_amounts"]})
        if status == "void":
            invoice["status_transitions"]["voided_at"] = created
        if status == "uncollectible":
            invoice["status_transitions"]["marked_uncollectible_at"] = created
        self._out.append(invoice)
        self._out.extend(lines)
        if status == "open":
            self.open_invoices.append(invoice)
            self.status = "past_due"
        acct.event("invoice.created", created, {"id": invoice_id, "object": "invoice"})
        return invoice

    def _begin_period(self, start: int, reason: str) -> None:
        if self.next_items is not None:
            self.items, self.next_items = self.next_items, None
        self.period_start = start
        self.period_end = self._boundary(self._cycle + 1)
        self._cycle += 1
        if self.status == "trialing":
            self.status = "active"
        lines = [self._line(it, self.period_start, self.period_end) for it in self.items]
        pending, self.pending = self.pending, []
        if (
            self.pause_collection
            and self.pause_collection.get("resumes_at")
            and self.pause_collection["resumes_at"] <= start
        ):
            self.pause_collection = None
        invoice = self._issue(start, lines + [line for _, line in pending], reason)
        for item, _ in pending:  # the renewal invoices the pending items
            item["invoice"] = invoice["id"]
            self._out.append(item)

    # -- time -----------------------------------------------------------------------------------
    def advance_to(self, when: int) -> Subscription:
        """Renew every period that starts before `when` (not past the account's `now`)."""
        limit = min(when, self.account.now)
        while self.ended_at is None and self.period_end <= limit:
            if self.cancel_at_period_end or (self.cancel_at and self.cancel_at <= self.period_end):
                self._end(self.period_end, self.canceled_at or self.period_end)
                break
            self._begin_period(self.period_end, "subscription_cycle")
        return self

    # -- changes --------------------------------------------------------------------------------
    def change(
        self, when: int, items: list[Item], prorate: bool = True, proration_behavior: str = "always_invoice"
    ) -> Subscription:
        """Replace the items mid-period (plan or quantity change). Prorations are invoiced at once
        (`always_invoice`) or left as pending invoice items for the next renewal (`create_prorations`)."""
        self.advance_to(when)
        old = self.items
        new = []
        for item in items:
            same = next((o for o in old if o.id and item.id == o.id), None)
            item.id = item.id or (same.id if same else self.account.ids("si"))
            new.append(item)
        if prorate and when > self.period_start:
            span = self.period_end - self.period_start
            left = self.period_end - when
            lines = []
            for item in old:
                lines.append(
                    self._line(
                        item,
                        when,
                        self.period_end,
                        amount=-round(price_amount(item.price, item.quantity) * left / span),
                        proration=True,
                        description=f"Unused time on {item.price['id']}",
                    )
                )
            for item in new:
                lines.append(
                    self._line(
                        item,
                        when,
                        self.period_end,
                        amount=round(price_amount(item.price, item.quantity) * left / span),
                        proration=True,
                        description=f"Remaining time on {item.price['id']}",
                    )
                )
            if proration_behavior == "create_prorations":
                for line in lines:
                    self._pend(line, when)
            else:
                self._issue(when, lines, "subscription_update", prorations=True)
        self.items = new
        self.account.event("customer.subscription.updated", when, {"id": self.id, "object": "subscription"})
        return self

    def _pend(self, line: dict, when: int) -> None:
        """A proration left as a pending invoice item (Stripe's `create_prorations`)."""
        details = line["parent"]["subscription_item_details"]
        item = {
            "id": self.account.ids("ii"),
            "object": "invoiceitem",
            "amount": line["amount"],
            "currency": line["currency"],
            "customer": self.customer["id"],
            "date": when,  # no `created`: real invoice items have none (the list is ordered and filtered by `date`)
            "description": line["description"],
            "discountable": True,
            "discounts": [],
            "invoice": None,
            "livemode": False,
            "metadata": {},
            "period": dict(line["period"]),
            "proration": True,
            "quantity": line["quantity"],
            "quantity_decimal": line.get("quantity_decimal") or quantity_text(line["quantity"]),
            "tax_rates": [],
            "test_clock": None,
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": self.id, "subscription_item": details["subscription_item"]},
            },
            "pricing": dict(line["pricing"]),
            "net_amount": line["amount"],
        }
        details["invoice_item"] = item["id"]
        self.pending.append((item, line))
        self._out.append(item)
        self.account.event("invoiceitem.created", when, dict(item))

    def delete_pending_items(self, when: int) -> Subscription:
        """Delete the pending invoice items (the change undone before the next invoice)."""
        self.advance_to(when)
        acct = self.account
        acct.flush()
        for item, _ in self.pending:
            acct.event("invoiceitem.deleted", when, dict(item))
            self._out = [o for o in self._out if o is not item]
            acct.store.delete("invoiceitem", item["id"])
        self.pending = []
        return self

    def change_at_renewal(self, when: int, items: list[Item]) -> Subscription:
        """Schedule new items (a downgrade, a seat change) for the next period."""
        self.advance_to(when)
        self.next_items = items
        for item in items:
            item.id = item.id or self.account.ids("si")
        return self

    def fail_next_payment(self) -> Subscription:
        self.pending_fail = True
        return self

    def recover(self, when: int) -> Subscription:
        """The open invoice is paid (a retried card works)."""
        self.advance_to(when)
        for invoice in self.open_invoices:
            invoice["status"] = "paid"
            invoice["amount_paid"], invoice["amount_remaining"] = invoice["amount_due"], 0
            invoice["status_transitions"]["paid_at"] = when
        self.open_invoices = []
        self.status = "active"
        return self

    def mark_unpaid(self, when: int) -> Subscription:
        """Dunning gave up but left the subscription in place (Stripe's 'mark as unpaid')."""
        self.advance_to(when)
        self.status = "unpaid"
        for invoice in self.open_invoices:
            invoice["status"] = "uncollectible"
            invoice["status_transitions"]["marked_uncollectible_at"] = when
        return self

    def pause(self, when: int, behavior: str = "void", resumes_at: int | None = None) -> Subscription:
        self.advance_to(when)
        self.pause_collection = {"behavior": behavior, "resumes_at": resumes_at}
        self.account.event(
            "customer.subscription.updated",
            when,
            {"id": self.id, "object": "subscription"},
            {"pause_collection": None},
        )
        return self

    def resume(self, when: int) -> Subscription:
        """Resume collection; the next renewal is billed normally."""
        self.advance_to(when)
        self.pause_collection = None
        self.account.event("customer.subscription.updated", when, {"id": self.id, "object": "subscription"})
        return self

    def cancel(self, when: int, at_period_end: bool = False, reason: str = "cancellation_requested") -> Subscription:
        """Cancel now or at period end; `reason` is what Stripe records in `cancellation_details.reason`:
        `cancellation_requested` when the customer (or the merchant on their behalf) cancels, `payment_failed`
        when dunning gives up."""
        self.advance_to(when)
        if self.ended_at is not None:
            return self
        self.canceled_at = when
        self.cancellation_reason = reason
        if at_period_end:
            self.cancel_at_period_end = True
            self.cancel_at = self.period_end
            self.advance_to(self.account.now)  # ends at period end if that is in the past
        else:
            self._end(when, when)
        return self

    def _end(self, ended_at: int, canceled_at: int) -> None:
        self.ended_at = ended_at
        self.canceled_at = canceled_at
        self.status = "canceled"
        self.account.event("customer.subscription.deleted", ended_at, {"id": self.id, "object": "subscription"})

    # -- output ---------------------------------------------------------------------------------
    def finish(self) -> dict:
        """Write the subscription's current state and items; returns the subscription object."""
        self.advance_to(self.account.now)
        acct = self.account
        items = []
        for item in self.items:
            items.append(
                {
                    "id": item.id,
                    "object": "subscription_item",
                    "created": self.start,
                    "discounts": [],
                    "metadata": {},
                    "price": _public(item.price),
                    "quantity": int(Decimal(str(item.quantity))),  # an integer on a subscription item
                    "subscription": self.id,
                    "tax_rates": [],
                    "current_period_start": self.period_start,
                    "current_period_end": self.period_end,
                }
            )
        flexible = {"proration_discounts": self.proration_discounts} if self.billing_mode == "flexible" else None
        sub = {
            "id": self.id,
            "object": "subscription",
            "customer": self.customer["id"],
            "status": self.status,
            "created": self.start,
            "start_date": self.start,
            "billing_cycle_anchor": self.anchor,
            "cancel_at": self.cancel_at,
            "cancel_at_period_end": self.cancel_at_period_end,
            "canceled_at": self.canceled_at,
            "ended_at": self.ended_at,
            "trial_start": self.start if self.trial_days else None,
            "trial_end": self.trial_end,
            "currency": self.items[0].price["currency"],
            "collection_method": self.collection,
            "pause_collection": self.pause_collection,
            "livemode": False,
            "metadata": {},
            "discounts": [d.id for d in self.discounts if d.in_force(acct.now)],
            "billing_mode": {"type": self.billing_mode, "flexible": flexible},
            "latest_invoice": None,
            "description": None,
            "days_until_due": None,
            "cancellation_details": {
                "comment": None,
                "feedback": None,
                "reason": self.cancellation_reason if self.canceled_at else None,
            },
        }
        for obj in [sub, *items, *self._out]:
            acct._put(obj)
        self._out = []
        return sub
