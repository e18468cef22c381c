"""dlt sources: Stripe (`ingestion.stripe`) and product events (`ingestion.product_events`)."""
