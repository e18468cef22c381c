"""The fields real Stripe sends on every object of the API version the simulator speaks, with the values a
plain account has: what the billing simulator (billing/) does not set itself.

The simulator builds only the fields the pipeline reads or a rule depends on; Stripe's OpenAPI spec of
API_VERSION marks many more as always sent (tests/stripe_spec/, checked by tests/test_stripe_spec.py). Their
values here are those of recorded responses of a plain test-mode account (tests/recordings/pay/, API
2025-10-29 and 2026-03-25): no tax settings, no shipping, no Connect, no test clock.
"""

from __future__ import annotations

import copy

API_VERSION = "2026-03-25.dahlia"

_NONE = None
ALWAYS_SENT: dict[str, dict] = {
    "customer": {"default_source": _NONE, "description": _NONE, "shipping": _NONE},
    "product": {
        "description": _NONE,
        "images": [],
        "marketing_features": [],
        "package_dimensions": _NONE,
        "shippable": _NONE,
        "url": _NONE,
    },
    "price": {"custom_unit_amount": _NONE},
    "coupon": {"max_redemptions": _NONE, "redeem_by": _NONE, "times_redeemed": 1},
    "discount": {"customer_account": _NONE},
    "subscription": {
        "application": _NONE,
        "application_fee_percent": _NONE,
        "automatic_tax": {"disabled_reason": _NONE, "enabled": False, "liability": _NONE},
        "billing_cycle_anchor_config": _NONE,
        "billing_thresholds": _NONE,
        "customer_account": _NONE,
        "default_payment_method": _NONE,
        "default_source": _NONE,
        "invoice_settings": {"account_tax_ids": _NONE, "issuer": {"type": "self"}},
        "next_pending_invoice_item_invoice": _NONE,
        "on_behalf_of": _NONE,
        "payment_settings": {
            "payment_method_options": _NONE,
            "payment_method_types": _NONE,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": _NONE,
        "pending_setup_intent": _NONE,
        "pending_update": _NONE,
        "schedule": _NONE,
        "test_clock": _NONE,
        "transfer_data": _NONE,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
    },
    "subscription_item": {"billing_thresholds": _NONE},
    "invoice": {
        "account_country": "US",
        "account_name": "Demo",
        "account_tax_ids": _NONE,
        "amount_overpaid": 0,
        "amount_shipping": 0,
        "application": _NONE,
        "automatic_tax": {
            "disabled_reason": _NONE,
            "enabled": False,
            "liability": _NONE,
            "provider": _NONE,
            "status": _NONE,
        },
        "automatically_finalizes_at": _NONE,
        "custom_fields": _NONE,
        "customer_account": _NONE,
        "customer_address": _NONE,
        "customer_name": _NONE,
        "customer_phone": _NONE,
        "customer_shipping": _NONE,
        "customer_tax_exempt": "none",
        "default_payment_method": _NONE,
        "default_source": _NONE,
        "default_tax_rates": [],
        "discounts": [],
        "ending_balance": 0,
        "footer": _NONE,
        "from_invoice": _NONE,
        "issuer": {"type": "self"},
        "last_finalization_error": _NONE,
        "latest_revision": _NONE,
        "next_payment_attempt": _NONE,
        "number": _NONE,
        "on_behalf_of": _NONE,
        "payment_settings": {"default_mandate": _NONE, "payment_method_options": _NONE, "payment_method_types": _NONE},
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "receipt_number": _NONE,
        "rendering": _NONE,
        "shipping_cost": _NONE,
        "shipping_details": _NONE,
        "starting_balance": 0,
        "statement_descriptor": _NONE,
        "test_clock": _NONE,
        "total_pretax_credit_amounts": [],
        "total_taxes": [],
        "webhooks_delivered_at": _NONE,
    },
    "invoiceitem": {"customer_account": _NONE},
    "payment_method": {
        "billing_details": {"address": _NONE, "email": _NONE, "name": _NONE, "phone": _NONE, "tax_id": _NONE},
        "customer_account": _NONE,
        "livemode": False,
        "metadata": {},
    },
    "credit_note": {
        "amount_shipping": 0,
        "customer_account": _NONE,
        "customer_balance_transaction": _NONE,
        "out_of_band_amount": _NONE,
        "pre_payment_amount": 0,
        "pretax_credit_amounts": [],
        "shipping_cost": _NONE,
        "total_taxes": [],
        "voided_at": _NONE,
    },
}


def _plan(price: dict) -> dict:
    """The legacy plan a subscription item still carries beside its price (every recorded item does)."""
    recurring = price.get("recurring") or {}
    return {
        "id": price["id"],
        "object": "plan",
        "active": price.get("active", True),
        "amount": price.get("unit_amount"),
        "amount_decimal": price.get("unit_amount_decimal"),
        "billing_scheme": price.get("billing_scheme", "per_unit"),
        "created": price.get("created"),
        "currency": price.get("currency"),
        "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count", 1),
        "livemode": False,
        "metadata": {},
        "meter": recurring.get("meter"),
        "nickname": price.get("nickname"),
        "product": price.get("product"),
        "tiers_mode": price.get("tiers_mode"),
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": recurring.get("usage_type", "licensed"),
    }


# a card payment method's `card` (PaymentMethod.Card): what a card without checks, wallet or 3-D Secure carries
CARD_ALWAYS_SENT = {
    "checks": _NONE,
    "country": "US",
    "display_brand": "visa",
    "funding": "credit",
    "generated_from": _NONE,
    "networks": _NONE,
    "regulated_status": _NONE,
    "three_d_secure_usage": _NONE,
    "wallet": _NONE,
}


def complete(obj: dict) -> dict:
    """`obj` with the fields Stripe always sends that it lacks, in place (it may still change afterwards)."""
    kind = obj.get("object")
    for key, value in ALWAYS_SENT.get(kind, {}).items():
        obj.setdefault(key, copy.deepcopy(value))
    if kind == "payment_method" and isinstance(obj.get("card"), dict):  # a card as Stripe sends one
        for key, value in CARD_ALWAYS_SENT.items():
            obj["card"].setdefault(key, copy.deepcopy(value))
    if kind == "product":
        obj.setdefault("updated", obj.get("created"))
    if kind == "credit_note":  # a post-payment credit note without tax
        obj.setdefault("number", f"DEMO-{obj['id'][-4:]}-CN-01")
        obj.setdefault("pdf", f"https://pay.stripe.com/credit_notes/{obj['id']}/pdf")
        obj.setdefault("post_payment_amount", obj.get("amount"))
        obj.setdefault("subtotal_excluding_tax", obj.get("subtotal"))
        obj.setdefault("total_excluding_tax", obj.get("total"))
    if kind == "invoice":
        obj["webhooks_delivered_at"] = obj["webhooks_delivered_at"] or obj.get("created")
    if kind == "subscription_item" and isinstance(obj.get("price"), dict) and obj["price"].get("recurring"):
        obj.setdefault("plan", _plan(obj["price"]))
    return obj
