# People's entry points. CI runs `make test` (see .ci/run).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format ui clean

install: $(STAMP)

# --compile-bytecode: compiled once here, not again on every start (each `saas-metrics run` imports Dagster,
# dbt and dlt; uv does not compile by default)
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev]" || $(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## make demo: install, start the embedded PostgreSQL, run the whole pipeline on demo data
demo: install
	$(BIN)/saas-metrics demo

## make test: lint, dbt parse, Dagster definitions load, then the pytest suite (its own PostgreSQL)
test: install lint
	$(BIN)/pytest

## make lint: ruff, then sqlfluff on the dbt project (it starts a throwaway PostgreSQL: the dbt templater compiles)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m saas_metrics.sql_lint lint

## make format: what ruff and sqlfluff can fix themselves (review the SQL diff: sqlfluff fix rewrites queries)
format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/python -m saas_metrics.sql_lint fix

ui: install
	$(BIN)/saas-metrics ui

clean:
	rm -rf .saas-metrics dbt_project/target dbt_project/logs
