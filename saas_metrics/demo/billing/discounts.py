"""Coupons on a subscription's invoices, as Stripe applies them. Each coupon redeemed on a subscription is a
discount object of its own (`di_...`, with `start`, and `end` for a repeating coupon); `percent_off` takes its
share of every line it covers, `amount_off` is spread over the invoice's positive lines in proportion to their
amounts; `once` applies to the first paid invoice, `repeating` to invoices starting within `duration_in_months`
of redemption, `forever` to all, and a coupon with `applies_to.products` discounts only their lines. Flexible
billing mode's `proration_discounts: included` nets the discount into the proration amounts instead. These are
the rules the subscription calls when it issues an invoice, kept apart so that they can be read in one place."""

from __future__ import annotations

from dataclasses import dataclass

from saas_metrics.demo.billing.periods import add_interval


@dataclass
class Discount:
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


def discount_object(discount: Discount, customer_id: str, subscription_id: str) -> dict:
    """The discount object a subscription's or invoice's `discounts` expand to."""
    return {
        "id": discount.id,
        "object": "discount",
        "start": discount.start,
        "end": discount.end,
        "customer": customer_id,
        "subscription": subscription_id,
        "subscription_item": None,
        "invoice": None,
        "invoice_item": None,
        "checkout_session": None,
        "promotion_code": None,
        "source": {"type": "coupon", "coupon": discount.coupon["id"]},
    }


def apply_discounts(
    discounts: list[Discount], lines: list[dict], period_start: int, prorations: bool = False, net: bool = False
) -> None:
    """Add each applicable discount's `discount_amounts` to the lines of an invoice starting at `period_start`.
    `prorations`: the lines are prorations (negative ones are discounted too, and no `once` coupon is used up);
    `net`: flexible mode's `included` proration discounts (the amounts net of discount, discount amounts of 0)."""
    for d in discounts:
        if d.applies(period_start):
            _apply_one(d, lines, prorations)
    if net:
        for ln in lines:
            off = sum(x["amount"] for x in ln["discount_amounts"])
            ln["amount"] -= off
            ln["subtotal"] = ln["amount"]
            ln["discount_amounts"] = [{**x, "amount": 0} for x in ln["discount_amounts"]]


def _apply_one(d: Discount, lines: list[dict], prorations: bool) -> None:
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
