"""The simulated Stripe account: the store its objects go to and everything that is not a subscription's own
billing. It hands out deterministic ids, buffers objects (completed with the fields Stripe always sends) and
events (only those within the last 31 days before `now`, as Stripe keeps them) into the `Store`, and creates the
catalogue (products, prices, coupons), customers with their cards, subscriptions (`subscribe`, which starts a
`Subscription` that bills through time), one-off invoices and credit notes. A price created `listed=False` is
one the lists no longer return (a deleted legacy plan)."""

from __future__ import annotations

import itertools

from saas_metrics.demo.billing.invoices import invoice_object, one_off_line
from saas_metrics.demo.billing.prices import Item
from saas_metrics.demo.billing.subscription import Subscription
from saas_metrics.demo.store import Store
from saas_metrics.demo.stripe_shape import API_VERSION, complete


class Ids:
    """Deterministic, Stripe-looking ids."""

    def __init__(self, prefix: str = ""):
        self.counters: dict[str, itertools.count] = {}
        self.prefix = prefix

    def __call__(self, kind: str) -> str:
        counter = self.counters.setdefault(kind, itertools.count(1))
        return f"{kind}_{self.prefix}{next(counter):08d}"


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

    def update_card(self, customer: dict, when: int, card_expires: tuple[int, int] = (12, 2030)) -> dict:
        """The customer sets a new default card at `when` (a payment_method made then)."""
        payment_method = self._put(
            {
                "id": f"pm_{customer['id']}_{when}",
                "object": "payment_method",
                "created": when,
                "customer": customer["id"],
                "type": "card",
                "card": {"brand": "visa", "last4": "4444", "exp_month": card_expires[0], "exp_year": card_expires[1]},
            }
        )
        previous = customer["invoice_settings"].get("default_payment_method")
        customer["invoice_settings"]["default_payment_method"] = payment_method["id"]
        self._put(customer)
        self.event(
            "customer.updated",
            when,
            {"id": customer["id"], "object": "customer"},
            {"invoice_settings": {"default_payment_method": previous}},
        )
        return payment_method

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
        subscription_id = subscription.id if subscription else None
        line = one_off_line(
            self.ids("il"), invoice_id, self.ids("ii"), amount, currency, description, created, subscription_id
        )
        invoice = invoice_object(
            invoice_id, customer, currency, created, created, created, [line], "manual", subscription_id, "paid"
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
