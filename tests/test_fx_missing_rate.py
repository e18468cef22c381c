"""A currency without a rate (METRICS.md "Currencies"): the build goes on, that currency's amounts are
left out of the reporting-currency totals, the local amounts stay visible, and a warning names the
currency and its customers.

The account, "today" 2025-12-15; the fx_rates seed has no CHF:
  cus_usd_a  USD 100/month from 2025-01-10
  cus_usd_b  USD 250/month from 2025-03-05, canceled at once 2025-09-20
  cus_chf    CHF 80/month from 2025-02-01
  cus_eur    EUR 100/month from 2025-01-15 (EUR 1.13 in 2025: 113)
By hand, in USD (CHF left out):
  customer_mrr_monthly 2025-06: usd_a 100, usd_b 250, eur 113, chf null (mrr_local 80)
  mrr_monthly 2025-06 ending_mrr 100 + 250 + 113 = 463, ending_customers 4 (chf is a paying customer)
  mrr_monthly 2025-11 ending_mrr 100 + 113 = 213, ending_customers 3
  mrr_monthly 2025-02: new_mrr 0 (chf's new movement has no USD value), new_customers 1
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from saas_metrics.demo.billing import Account, Item
from saas_metrics.demo.store import Store
from tests.conftest import query
from tests.support.clock import ts
from tests.support.pipeline import dbt_build, load_stripe

NOW = ts("2025-12-15")
START = ts("2024-12-01")


@pytest.fixture(scope="module")
def warehouse(fresh_database, tmp_path_factory):
    work = tmp_path_factory.mktemp("fx_missing")
    store = Store(work / "stripe.sqlite")
    acct = Account(store, NOW, id_prefix="X")
    product = acct.product("Product", START, id="prod_fx")
    usd100 = acct.price(product, 10000, START, id="price_usd100")
    usd250 = acct.price(product, 25000, START, id="price_usd250")
    chf80 = acct.price(product, 8000, START, currency="chf", id="price_chf80")
    eur100 = acct.price(product, 10000, START, currency="eur", id="price_eur100")
    acct.subscribe(acct.customer(ts("2025-01-10"), id="cus_usd_a"), [Item(usd100)], ts("2025-01-10")).finish()
    leaving = acct.subscribe(acct.customer(ts("2025-03-05"), id="cus_usd_b"), [Item(usd250)], ts("2025-03-05"))
    leaving.cancel(ts("2025-09-20"))
    leaving.finish()
    chf = acct.customer(ts("2025-02-01"), id="cus_chf", currency="chf", country="CH")
    acct.subscribe(chf, [Item(chf80)], ts("2025-02-01")).finish()
    eur = acct.customer(ts("2025-01-15"), id="cus_eur", currency="eur", country="DE")
    acct.subscribe(eur, [Item(eur100)], ts("2025-01-15")).finish()
    acct.flush()
    url = fresh_database("fx_missing")
    load_stripe(store, url, work, NOW)
    dbt_build(url, work, NOW)
    return url


def _norm(value) -> str | None:
    return None if value is None else format(Decimal(value).normalize(), "f")


def test_the_waterfall_leaves_the_currency_out_amounts_and_counts(warehouse):
    rows = {
        str(month)[:7]: (_norm(new), new_customers, _norm(churned), _norm(ending), customers, _norm(fx))
        for month, new, new_customers, churned, ending, customers, fx in query(
            warehouse,
            "select month, new_mrr, new_customers, churned_mrr, ending_mrr, ending_customers, fx_impact "
            "from marts.mrr_monthly",
        )
    }
    # (new_mrr, new_customers, churned_mrr, ending_mrr, ending_customers, fx_impact)
    assert rows["2025-01"] == ("213", 2, "0", "213", 2, "0")  # usd_a 100 + eur 100 x 1.13
    assert rows["2025-02"] == ("0", 0, "0", "213", 2, "0")  # cus_chf starts: not in the USD waterfall
    assert rows["2025-03"] == ("250", 1, "0", "463", 3, "0")  # usd_b
    assert rows["2025-06"] == ("0", 0, "0", "463", 3, "0")
    assert rows["2025-09"] == ("0", 0, "250", "213", 2, "0")  # usd_b churns
    assert rows["2025-12"] == ("0", 0, "0", "213", 2, "0")
    kpis = dict(query(warehouse, "select to_char(month, 'YYYY-MM'), arpu from marts.saas_kpis_monthly"))
    assert _norm(kpis["2025-06"]) == "154.3333"  # 463 / 3: cus_chf is in neither the MRR nor the count


def test_local_amounts_stay_visible(warehouse):
    assert query(
        warehouse,
        "select movement_date::text, movement_type, mrr_before, mrr_after, mrr_change, mrr_after_local, fx_rate "
        "from marts.mrr_movements where customer_id = 'cus_chf'",
    ) == [("2025-02-01", "new", None, None, None, Decimal("80.0000"), None)]
    month = query(
        warehouse,
        "select mrr, mrr_local, currency, mrr_band from marts.customer_mrr_monthly "
        "where customer_id = 'cus_chf' and month = '2025-06-01'",
    )
    assert month == [(None, Decimal("80.0000"), "chf", None)]
    current = query(
        warehouse, "select mrr, mrr_local, is_paying from marts.customer_mrr_current where customer_id = 'cus_chf'"
    )
    assert current == [(None, Decimal("80.0000"), True)]
    # the cohort of 2025-02 (cus_chf alone) is not in the USD cohorts; 2025-01 is usd_a and eur
    cohorts = dict(
        query(
            warehouse,
            "select to_char(cohort_month, 'YYYY-MM'), cohort_customers from marts.cohort_retention "
            "where months_since_start = 0",
        )
    )
    assert cohorts == {"2025-01": 2, "2025-03": 1}
    plans = query(
        warehouse,
        "select price_id, mrr, customers from marts.mrr_by_plan where month = '2025-06-01' order by price_id",
    )
    assert plans == [
        ("price_eur100", Decimal("113.0000"), 1),
        ("price_usd100", Decimal("100.0000"), 1),
        ("price_usd250", Decimal("250.0000"), 1),
    ]


def test_a_warning_names_the_currency_and_its_customers(warehouse, monkeypatch):
    import dagster as dg

    from orchestration.defs.checks import fx_rates_cover_every_currency
    from orchestration.defs.resources import WarehouseResource
    from saas_metrics import runtime

    monkeypatch.setenv("DATABASE_URL", warehouse)
    runtime.settings.cache_clear()
    result = fx_rates_cover_every_currency(warehouse=WarehouseResource())
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    metadata = {key: value.value for key, value in result.metadata.items()}
    assert metadata["currencies_without_rate"] == "chf"
    assert metadata["missing_rate_chf"] == (
        "1 customers (1 paying, MRR 80.00 CHF today) left out of the USD totals: cus_chf. "
        "Add chf rows to dbt_project/seeds/fx_rates.csv."
    )
