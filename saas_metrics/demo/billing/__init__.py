"""A small billing engine that issues Stripe-shaped objects the way Stripe Billing does.

Both the demo generator and the MRR scenario tests describe histories through it
("subscribe on Jan 31 23:30, upgrade on Mar 10 with prorations, cancel at period end"),
and it writes customers, prices, subscriptions, items, invoices with every line, credit
notes and events into a `Store` in the current API shape (2025-03-31 "basil" and later):
periods on subscription items, `invoice.parent.subscription_details`, line
`pricing.price_details` and `parent.subscription_item_details`, `discount_amounts`, `taxes`.

One module per job: account.py (`Account`: ids, the store, the catalogue, customers, one-off
invoices, credit notes, events), subscription.py (`Subscription`: periods, changes, dunning, pause,
cancellation), invoices.py (the lines, pending invoice items, tax and invoices as Stripe shapes
them), discounts.py (coupons), prices.py (`Item`, what a price costs), periods.py (`add_interval`).

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

from saas_metrics.demo.billing.account import Account
from saas_metrics.demo.billing.periods import add_interval
from saas_metrics.demo.billing.prices import Item
from saas_metrics.demo.billing.subscription import Subscription

__all__ = ["Account", "Item", "Subscription", "add_interval"]
