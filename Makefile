# People's entry points. CI runs `make test` (see .ci/run).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format ui clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	# bytecode compiled now, not on every start: each `saas-metrics run` imports Dagster, dbt and dlt
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev]" || $(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## make demo: install, start the embedded PostgreSQL, run the whole pipeline on demo data
demo: install
	$(BIN)/saas-metrics demo

## make test: lint, dbt parse, Dagster definitions load, then the pytest suite (its own PostgreSQL)
test: install lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

ui: install
	$(BIN)/saas-metrics ui

clean:
	rm -rf .saas-metrics dbt_project/target dbt_project/logs
