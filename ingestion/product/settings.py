"""The product-events source: the event shape, its defaults, and the raw schema it loads into."""

RAW_SCHEMA = "raw_product"

# The columns of raw_product.events, and the source column each one is read from by default
# (SAAS_METRICS_EVENTS_COLUMNS renames them: "event_id=id,account_id=tenant_id,occurred_at=created_at").
EVENT_COLUMNS = {
    "event_id": "event_id",
    "account_id": "account_id",
    "user_id": "user_id",
    "event_name": "event_name",
    "properties": "properties",
    "occurred_at": "timestamp",
}
REQUIRED = ("event_id", "account_id", "event_name", "occurred_at")

# Events that arrive this long after later ones are still picked up: the SQL cursor is re-read
# from (last timestamp - window), and the rows read twice are merged on event_id.
DEFAULT_LATE_WINDOW_HOURS = 72

FILE_SUFFIXES = (".ndjson", ".jsonl", ".json", ".ndjson.gz", ".jsonl.gz", ".json.gz", ".parquet")
BATCH_SIZE = 5000  # rows handed to dlt at a time
