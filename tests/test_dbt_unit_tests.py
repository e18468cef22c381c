"""The dbt unit tests (`unit_tests:` in the models' YAML: the movement classification, the SaaS KPI
formulas and the forecast's trials ending, given rows and expected rows worked out by hand), run by
`dbt test` against a real PostgreSQL.
The nightly build leaves them out (--exclude-resource-type unit_test): they test the code, not the data."""

from __future__ import annotations

from ingestion import stripe
from ingestion.raw_tables import ensure_tables
from saas_metrics.dbt_cli import run_dbt
from tests.support.clock import ts
from tests.support.pipeline import dbt_build

UNIT_TESTS = {
    "movements_are_classified_per_customer_and_day",
    "a_return_after_the_reactivation_window_is_new",
    "saas_kpis_formulas",
    "trials_ending_at_their_licensed_prices_mrr",
}


def test_dbt_unit_tests_pass(fresh_database, tmp_path):
    url = fresh_database("unit")
    ensure_tables(url, stripe.TABLES)
    # the models' parents must exist (dbt reads their column types); an empty warehouse is enough
    parents = "+saas_kpis_monthly +int_customer_mrr_movements +int_trials_ending"
    dbt_build(url, tmp_path, ts("2025-03-15"), select=parents)
    result = run_dbt(["test", "--select", "test_type:unit"], url, tmp_path / "dbt_unit")
    assert result.returncode == 0, "\n".join(result.stdout.splitlines()[-40:])
    passed = {
        line.split("PASS ")[1].split()[0].split("::")[-1] for line in result.stdout.splitlines() if " PASS " in line
    }
    assert UNIT_TESTS <= passed, passed
