"""The finance files: formats, and the raw schema they load into."""

RAW_SCHEMA = "raw_finance"

# file -> required columns, in order
SPEND_COLUMNS = ["month", "channel", "amount", "currency"]
GROSS_MARGIN_COLUMNS = ["month", "gross_margin"]
PNL_COLUMNS = ["month", "revenue", "operating_expenses", "net_burn", "currency"]
