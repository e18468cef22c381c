"""The finance files: formats, and the raw schema they load into."""

RAW_SCHEMA = "raw_finance"

# file -> required columns, in order
SPEND_COLUMNS = ["month", "channel", "amount", "currency"]
GROSS_MARGIN_COLUMNS = ["month", "gross_margin"]
PNL_COLUMNS = ["month", "revenue", "operating_expenses", "net_burn", "currency"]
# one row per version of a contract billed outside Stripe (METRICS.md "Contracts outside Stripe")
CONTRACT_COLUMNS = [
    "contract_id",
    "customer_id",
    "customer_name",
    "country",
    "plan",
    "amount",
    "currency",
    "interval",
    "interval_count",
    "quantity",
    "discount_percent",
    "start_date",
    "end_date",
]
CONTRACT_INTERVALS = ("month", "year", "week", "day")
# one row per customer of a source merged into one customer (METRICS.md "One customer across sources")
CUSTOMER_MAPPING_COLUMNS = ["billing_account", "customer_id", "customer_key"]
