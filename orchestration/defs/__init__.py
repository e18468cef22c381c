"""One module per concern; `orchestration/definitions.py` assembles them."""
