"""A subscription billed through time, the way Stripe Billing runs one: its periods (a trial's $0 invoice, then
renewals stepping from the billing-cycle anchor), the invoices it issues and whether they are paid, open, drafts,
void or uncollectible (failed payments, dunning, paused collection), its changes (mid-period with prorations,
invoiced at once by `always_invoice` or left as pending invoice items by `create_prorations` until the next
renewal or their deletion; new items at renewal), its cancellation, and in the end its state and items. It decides
when something is billed; what the lines, discounts, tax and invoices look like is invoices.py's and
discounts.py's. Its account (a TYPE_CHECKING import: the account creates subscriptions) hands out the ids and
stores what it writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from saas_metrics.demo.billing.discounts import Discount, apply_discounts, discount_object
from saas_metrics.demo.billing.invoices import apply_tax, invoice_object, pending_invoice_item, subscription_line
from saas_metrics.demo.billing.periods import add_interval
from saas_metrics.demo.billing.prices import Item, price_amount, public_price

if TYPE_CHECKING:
    from saas_metrics.demo.billing.account import Account


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
    discounts: list[Discount] = field(default_factory=list)
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
            Discount(c, self.start, id=acct.ids("di")) for c in ([self.coupon] if self.coupon else []) + self.coupons
        ]
        for d in self.discounts:  # the discount objects a subscription's or invoice's `discounts` expand to
            acct._put(discount_object(d, self.customer["id"], self.id))
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
    ) -> dict:
        return subscription_line(
            self.account.ids("il"),
            self.id,
            item,
            start,
            end,
            flexible=self.billing_mode == "flexible",
            amount=amount,
            proration=proration,
            description=description,
        )

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
        # flexible mode's `included` proration discounts: net proration amounts, discount amounts of 0
        net = prorations and self.billing_mode == "flexible" and self.proration_discounts == "included"
        apply_discounts(self.discounts, lines, period_start, prorations=prorations, net=net)
        apply_tax(lines, self.tax_percent)
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
        invoice = invoice_object(
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
        if self.pause_collection and status != "paid":  # a paused collection never attempts a payment
            invoice["attempted"], invoice["attempt_count"] = False, 0
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
        item = pending_invoice_item(self.account.ids("ii"), line, self.customer["id"], self.id, when)
        line["parent"]["subscription_item_details"]["invoice_item"] = item["id"]
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

    def recover(self, when: int, card_update: bool = False) -> Subscription:
        """The open invoice is paid at `when`: by Stripe's next retry of the same card, or (`card_update`) by the
        attempt Stripe makes when the customer sets a new default card then."""
        self.advance_to(when)
        if card_update:
            self.account.update_card(self.customer, when)
        for invoice in self.open_invoices:
            invoice["status"] = "paid"
            invoice["attempt_count"] += 1
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
            invoice["attempt_count"] = 4  # Stripe's default schedule: the first attempt and three retries
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
        if reason == "payment_failed":  # dunning gave up after the last retry
            for invoice in self.open_invoices:
                invoice["attempt_count"] = 4
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
                    "price": public_price(item.price),
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
