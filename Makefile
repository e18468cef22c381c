# People's entry points. CI runs `make test` (see .ci/run).
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAKE_STAMP := $(VENV)/.installed-lake

.PHONY: install install-lake java demo test lint format ui clean

install: $(STAMP)

# --compile-bytecode: compiled once here, not again on every start (each `saas-metrics run` imports Dagster,
# dbt and dlt; uv does not compile by default)
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 is required)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev]" || $(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## make install-lake: what lake mode adds (README "Lake mode"): pyspark, dbt-spark, deltalake, and a Java runtime
install-lake: $(LAKE_STAMP) java

$(LAKE_STAMP): $(STAMP)
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev,lake]" || $(BIN)/python -m pip install --quiet -e ".[dev,lake]"
	touch $(LAKE_STAMP)

# Spark runs on Java: Debian's JRE 17 when no `java` is on PATH (as root, as CI runs; anyone else is told what to run)
java:
	@command -v java >/dev/null || { \
		echo "java not found: installing Debian's openjdk-17-jre-headless (Spark needs a Java runtime)"; \
		if [ "$$(id -u)" = 0 ]; then \
			(DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless >/dev/null 2>&1 || \
			 (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openjdk-17-jre-headless >/dev/null)) || \
			{ echo "error: could not install openjdk-17-jre-headless with apt-get: install a Java runtime (17 or 21) and rerun"; exit 1; }; \
		else \
			echo "error: no Java runtime: run sudo apt-get install -y openjdk-17-jre-headless (or set JAVA_HOME), then rerun"; exit 1; \
		fi; \
		command -v java >/dev/null || { echo "error: java is still not on PATH after installing openjdk-17-jre-headless"; exit 1; }; }

## make demo: install, start the embedded PostgreSQL, run the whole pipeline on demo data
demo: install
	$(BIN)/saas-metrics demo

## make test: lint, dbt parse, Dagster definitions load, then the pytest suite (its own PostgreSQL; lake mode's test
## its own Spark cluster, hence install-lake)
test: install install-lake lint
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
