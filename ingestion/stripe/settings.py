"""Endpoints and constants of the Stripe source."""

PAGE_SIZE = 100  # Stripe's maximum `limit`
EMBED_LIMIT = 10  # rows Stripe embeds in invoice.lines and subscription.items

# Stripe keeps events for 30 days. Incremental loads read events since the last successful
# sync; when that sync is older than this (a day of margin), the source reloads everything.
EVENT_WINDOW_DAYS = 30
INCREMENTAL_MAX_AGE_DAYS = 29
# Objects created a little before the cursor are listed again: clocks and in-flight writes.
CURSOR_OVERLAP_SECONDS = 3600

MAX_RETRIES = 6
REQUEST_TIMEOUT_SECONDS = 80.0  # the stripe library's own default; STRIPE_TIMEOUT overrides it
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0

# resource name -> (list path, extra list params, object type in events)
LISTS = {
    # the default card's expiry (churn risk) comes with the customer, expanded
    "customers": ("/v1/customers", {"expand": ["data.invoice_settings.default_payment_method"]}, "customer"),
    "products": ("/v1/products", {}, "product"),
    "prices": ("/v1/prices", {}, "price"),
    "plans": ("/v1/plans", {}, "plan"),
    # the products a coupon is restricted to are returned only when expanded (int_discounts_ending)
    "coupons": ("/v1/coupons", {"expand": ["data.applies_to"]}, "coupon"),
    # canceled subscriptions are hidden unless status=all is asked for
    # their discounts expanded: the coupon behind each discount id (mrr_methodology stripe: its duration)
    "subscriptions": ("/v1/subscriptions", {"status": "all", "expand": ["data.discounts"]}, "subscription"),
    "invoices": ("/v1/invoices", {"expand": ["data.discounts"]}, "invoice"),
    "credit_notes": ("/v1/credit_notes", {}, "credit_note"),
    # pending (`invoice: null`, e.g. create_prorations until the next renewal) and invoiced ones
    "invoiceitems": ("/v1/invoiceitems", {}, "invoiceitem"),
}

# Lists that grow with the account, read by several chains of pages at once, each over a range of `created`
# (StripeApi.paginate_split): one chain asks one page per round trip, far below the request budget. Stripe
# filters each of them on `created` (credit notes it does not).
SPLIT_LISTS = {"customers", "subscriptions", "invoices", "invoiceitems", "events"}
SPLIT_AFTER_PAGES = 3  # a list of at most this many pages is read page after page

# The field a list is ordered by and its `created` filter applies to, when it is not `created`: invoice items have
# no `created` at all (every recorded one, API 2020-08-27 to 2026-03-25), and Stripe's `created` filter on
# /v1/invoiceitems applies to their `date`. The ranges of StripeApi.paginate_split and the raw tables' `created`
# column read this field.
TIME_FIELDS = {"invoiceitems": "date"}


def time_field(table: str) -> str:
    """The field a list's `created` filter and order apply to (TIME_FIELDS), `created` for the others."""
    return TIME_FIELDS.get(table, "created")


# Objects Stripe deletes outright (no longer listed, a 404 by id): the `<type>.deleted` event carries the
# object, which is loaded with `"deleted": true` in `data` so staging can drop it.
DELETED_EVENTS = {"invoiceitems": "invoiceitem.deleted"}

# Prices the lists no longer return (a deleted legacy plan) that invoice lines or invoice items still name
# are fetched by id, once: the ids known are kept in the source state. A list of prices waits at most this
# long for the price and plan lists of the same run before fetching what they did not return.
PRICE_LISTS_WAIT_SECONDS = 120
# object type of the rows of the tables that are not a list's own
CHILD_OBJECT_TYPES = {"invoice_lines": "line_item", "subscription_items": "subscription_item", "events": "event"}


def object_type_of(table: str) -> str:
    """The Stripe object type whose objects are the rows of a raw table."""
    return LISTS[table][2] if table in LISTS else CHILD_OBJECT_TYPES.get(table, table)


# retrieve path for an object type named in events
RETRIEVE_PATHS = {
    "customer": "/v1/customers/{id}",
    "product": "/v1/products/{id}",
    "price": "/v1/prices/{id}",
    "plan": "/v1/plans/{id}",
    "coupon": "/v1/coupons/{id}",
    "subscription": "/v1/subscriptions/{id}",
    "invoice": "/v1/invoices/{id}",
    "credit_note": "/v1/credit_notes/{id}",
    "invoiceitem": "/v1/invoiceitems/{id}",
}

# params of a retrieve by id, per object type (the same expansions as its list)
RETRIEVE_PARAMS = {
    "customer": {"expand": ["invoice_settings.default_payment_method"]},
    "subscription": {"expand": ["discounts"]},
    "invoice": {"expand": ["discounts"]},
    "coupon": {"expand": ["applies_to"]},
}

# Every table staging reads. dlt creates a table only when a resource yields rows, so an
# account without coupons or credit notes would leave staging without its source:
# `TABLES` (ingestion/stripe/__init__.py) creates the missing ones empty, in the shape dlt gives them.
RAW_TABLES = {
    "customers": [],
    "products": [],
    "prices": [],
    "plans": [],
    "coupons": [],
    "subscriptions": ["customer_id", "status"],
    "invoices": ["customer_id", "subscription_id", "status"],
    "credit_notes": ["customer_id", "invoice_id"],
    "invoiceitems": [],
    "events": ["type"],
    "invoice_lines": ["invoice_id"],
    "subscription_items": ["subscription_id"],
}

# indexed columns of the large raw tables (TABLES): synced_at for incremental staging,
# the merge keys for dlt's merges
RAW_INDEXES: dict[str, list[str]] = {
    "invoices": ["synced_at"],
    "invoice_lines": ["synced_at", "invoice_id"],
}
