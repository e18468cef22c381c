"""dlt sources: Stripe (`ingestion.stripe`), product events (`ingestion.product`) and the finance files
(`ingestion.finance`); `ingestion.raw_tables` creates the raw tables a load had nothing for, empty."""

import dlt

# dlt gzips each file it writes for the destination, then reads it back on this machine a moment later to
# copy it into PostgreSQL: CPU spent for nothing (a fifth of a first load of 20,000 customers). Files stay
# uncompressed (the NORMALIZE__DATA_WRITER__DISABLE_COMPRESSION variable still wins when set).
dlt.config["normalize.data_writer.disable_compression"] = True
