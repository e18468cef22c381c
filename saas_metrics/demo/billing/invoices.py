"""Invoices, their lines and pending invoice items in Stripe's current shape (API 2025-03-31 "basil" and
later: `invoice.parent.subscription_details`, line `pricing.price_details` and `parent.subscription_item_details`
or `invoice_item_details`, `quantity_decimal` on every line), the exclusive tax a tax rate adds to lines, and an
invoice's totals added up from its lines. Pure functions of what they are given (ids included, handed out by the
account), so that the subscription and the account decide when something is billed and this module alone decides
what the objects look like."""

from __future__ import annotations

from decimal import Decimal

from saas_metrics.demo.billing.prices import Item, price_amount, quantity_text


def subscription_line(
    line_id: str,
    subscription_id: str,
    item: Item,
    start: int,
    end: int,
    *,
    flexible: bool,
    amount: int | None = None,
    proration: bool = False,
    description: str | None = None,
) -> dict:
    """A subscription item's line for `start`..`end`: a whole period of its price unless `amount` says otherwise
    (a trial's 0, a proration). `flexible`: the subscription is in flexible billing mode."""
    price = item.price
    qty = item.quantity
    if amount is None:
        amount = price_amount(price, qty)
    unit_amount_decimal = price["unit_amount_decimal"]
    if proration:
        # real Stripe: null in flexible mode; the prorated, signed per-unit amount in classic mode
        unit_amount_decimal = None if flexible else str(round(amount / max(Decimal(str(qty)), 1)))
    line = {
        "id": line_id,
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
                "subscription": subscription_id,
                "subscription_item": item.id,
            },
        },
    }
    line["quantity_decimal"] = quantity_text(qty)  # every line of API 2026-03-25 carries it
    return line


def one_off_line(
    line_id: str,
    invoice_id: str,
    invoice_item_id: str,
    amount: int,
    currency: str,
    description: str,
    created: int,
    subscription_id: str | None,
) -> dict:
    """The line of a one-off invoice (a setup fee): an amount alone, no price."""
    return {
        "id": line_id,
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
                "invoice_item": invoice_item_id,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": subscription_id,
            },
        },
    }


def pending_invoice_item(item_id: str, line: dict, customer_id: str, subscription_id: str, when: int) -> dict:
    """A proration line left as a pending invoice item (Stripe's `create_prorations`), not yet invoiced."""
    details = line["parent"]["subscription_item_details"]
    return {
        "id": item_id,
        "object": "invoiceitem",
        "amount": line["amount"],
        "currency": line["currency"],
        "customer": customer_id,
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
            "subscription_details": {
                "subscription": subscription_id,
                "subscription_item": details["subscription_item"],
            },
        },
        "pricing": dict(line["pricing"]),
        "net_amount": line["amount"],
    }


def apply_tax(lines: list[dict], tax_percent: float) -> None:
    """A tax rate's exclusive tax on each line's amount after discounts (the line's `taxes`)."""
    if not tax_percent:
        return
    for ln in lines:
        base = ln["amount"] - sum(d["amount"] for d in ln["discount_amounts"])
        tax = round(base * tax_percent / 100)
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


def invoice_object(
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
    """The invoice of `lines` (already discounted and taxed), its totals added up from them."""
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
        "attempt_count": 0 if status == "draft" else 1,
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
