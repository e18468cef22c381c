"""dlt sources: Stripe (`ingestion.stripe`) and product events (`ingestion.product_events`)."""

import dlt

# dlt gzips each file it writes for the destination, then reads it back on this machine a moment later to
# copy it into PostgreSQL: CPU spent for nothing (a fifth of a first load of 20,000 customers). Files stay
# uncompressed (the NORMALIZE__DATA_WRITER__DISABLE_COMPRESSION variable still wins when set).
dlt.config["normalize.data_writer.disable_compression"] = True
