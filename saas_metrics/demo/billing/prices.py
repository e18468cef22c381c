"""What a subscription item costs: an `Item` (a price and a quantity), the amount of a whole period of it
(volume tiers price every unit at the tier the quantity falls in, plus its flat amount), a quantity as
`quantity_decimal` writes it, and a price as Stripe sends it (without the simulator's own keys). Kept apart
because both the invoice lines and the subscription's changes and state read them, in exact decimal arithmetic
so that a fractional quantity (2.5 seats, flexible billing mode) never picks up binary rounding."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass
class Item:
    price: dict
    quantity: int | Decimal | str = 1  # a fraction ("2.5") only in flexible billing mode
    id: str | None = None


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


def public_price(price: dict) -> dict:
    """A price as Stripe sends it: without the simulator's own keys (`_unlisted`, `_tiers`)."""
    return {k: v for k, v in price.items() if not k.startswith("_")}
