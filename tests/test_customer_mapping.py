"""One customer across sources (README "One customer across sources", METRICS.md "One customer across sources"):
a mapping file merges customers of two Stripe accounts and of the contracts file into one customer each. Two
Stripe accounts served over Stripe's protocol (us and eu) and a contracts file, built by dbt as of 2025-12-15,
once with the mapping and once without. Numbers worked out by hand beside each assertion.

- cus_us_1: Pro at $80 a month from 2025-03-01, mapped to nobody.
- Globex: cus_us_5 at $200 a month from 2025-04-01 in the US account, and cus_eu_5 at $150 a month from
  2025-06-01 in the EU account (a European entity billing this customer in USD): mapped to `globex`.
- Initech: the contract c-initech at $500 a month from 2025-02-01 to 2025-08-01, then cus_us_9 at $600 a month
  in Stripe from 2025-08-01: mapped to `initech`. The move is an expansion of 100, not a churn and a new customer.
"""

from __future__ import annotations

import pytest

from ingestion.finance import FinanceFileError
from ingestion.finance.helpers import customer_mapping_rows
from saas_metrics.demo.billing import Account, Item
from saas_metrics.demo.store import Store
from tests.conftest import n, query
from tests.support.clock import ts
from tests.support.pipeline import dbt_build, load_finance, load_stripe

NOW = ts("2025-12-15")
START = ts("2025-01-01")
EU_KEY = "sk_test_eu_entity"
CONTRACTS = (
    "contract_id,customer_id,customer_name,country,plan,amount,currency,interval,interval_count,quantity,"
    "discount_percent,start_date,end_date\n"
    "c-initech,initech,Initech,US,Support,500,usd,month,1,1,0,2025-02-01,2025-08-01\n"
)
MAPPING = (
    "billing_account,customer_id,customer_key\n"
    "us,cus_us_5,globex\n"
    "eu,cus_eu_5,globex\n"
    "contracts,initech,initech\n"
    "us,cus_us_9,initech\n"
)
# month: (ending MRR, new, expansion, reactivation, churned, new customers, churned customers, ending customers)
MAPPED = {
    "2025-02-01": ("500", "500", "0", "0", "0", 1, 0, 1),  # initech's contract
    "2025-03-01": ("580", "80", "0", "0", "0", 1, 0, 2),  # cus_us_1
    "2025-04-01": ("780", "200", "0", "0", "0", 1, 0, 3),  # globex in the US account
    "2025-06-01": ("930", "0", "150", "0", "0", 0, 0, 3),  # globex in the EU account too: an expansion
    "2025-08-01": ("1030", "0", "100", "0", "0", 0, 0, 3),  # initech from its contract to Stripe: 600 - 500
    "2025-12-01": ("1030", "0", "0", "0", "0", 0, 0, 3),
}
APART = {
    "2025-06-01": ("930", "150", "0", "0", "0", 1, 0, 4),  # cus_eu_5 a new customer
    "2025-08-01": ("1030", "600", "0", "0", "500", 1, 1, 4),  # the contract churned, cus_us_9 new
}


def us_account(store: Store) -> None:
    acct = Account(store, NOW, id_prefix="us")
    product = acct.product("Pro", START, id="prod_pro")
    pro = acct.price(product, 8000, START, id="price_pro")
    team = acct.price(product, 20000, START, id="price_team")
    support = acct.price(acct.product("Support", START, id="prod_support"), 60000, START, id="price_support")
    acct.subscribe(acct.customer(ts("2025-03-01"), id="cus_us_1"), [Item(pro)], ts("2025-03-01")).finish()
    acct.subscribe(acct.customer(ts("2025-04-01"), id="cus_us_5"), [Item(team)], ts("2025-04-01")).finish()
    acct.subscribe(acct.customer(ts("2025-08-01"), id="cus_us_9"), [Item(support)], ts("2025-08-01")).finish()
    acct.flush()


def eu_account(store: Store) -> None:
    acct = Account(store, NOW, id_prefix="eu")
    price = acct.price(acct.product("Team (EU entity)", START, id="prod_team"), 15000, START, id="price_team")
    acct.subscribe(acct.customer(ts("2025-06-01"), id="cus_eu_5"), [Item(price)], ts("2025-06-01")).finish()
    acct.flush()


def monthly(url: str) -> dict[str, tuple]:
    rows = query(
        url,
        "select month::text, ending_mrr, new_mrr, expansion_mrr, reactivation_mrr, churned_mrr, new_customers,"
        " churned_customers, ending_customers from marts.mrr_monthly",
    )
    return {row[0]: (*(n(v) for v in row[1:6]), *row[6:]) for row in rows}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, fresh_database):
    work = tmp_path_factory.mktemp("mapping")
    us, eu = Store(work / "us.sqlite"), Store(work / "eu.sqlite")
    us_account(us)
    eu_account(eu)
    url = fresh_database("mapping")
    load_stripe(us, url, work, NOW, account="us", pipeline_name="stripe__us")
    load_stripe(eu, url, work, NOW, account="eu", pipeline_name="stripe__eu", api_key=EU_KEY)
    return url, work


@pytest.fixture(scope="module")
def mapped(loaded):
    url, work = loaded
    load_finance(url, work, contracts_csv=CONTRACTS, customer_mapping_csv=MAPPING)
    dbt_build(url, work, ts("2025-07-15"))  # before the move, then incrementally after it
    dbt_build(url, work, NOW)
    return monthly(url)


def test_a_mapping_merges_customers_across_accounts_and_sources(mapped):
    assert {month: mapped[month] for month in MAPPED} == MAPPED


def test_the_merged_customers_in_the_customer_marts(mapped, loaded):
    url, _ = loaded
    current = query(
        url,
        "select customer_id, billing_account, mrr, paying_subscriptions from marts.customer_mrr_current order by 1",
    )
    # globex: 200 + 150 in two accounts (billing_account: its most recently created customer's); initech: 600
    assert [(c, a, n(m), s) for c, a, m, s in current] == [
        ("cus_us_1", "us", "80", 1),
        ("globex", "eu", "350", 2),
        ("initech", "us", "600", 1),
    ]
    lifetime = query(
        url, "select customer_id, first_paid_date::text, churn_date from marts.customer_lifetime order by 1"
    )
    assert lifetime == [
        ("cus_us_1", "2025-03-01", None),
        ("globex", "2025-04-01", None),
        ("initech", "2025-02-01", None),  # a customer since its contract, never churned
    ]


def test_revenue_of_a_merged_customer_adds_both_accounts(mapped, loaded):
    url, _ = loaded
    (revenue,) = query(url, "select lifetime_revenue from marts.customer_lifetime where customer_id = 'globex'")[0]
    # paid monthly in advance: US $200 x 9 invoices (April to December), EU $150 x 7 (June to December)
    assert n(revenue) == "2850"


def test_incremental_equals_a_rebuild(mapped, loaded):
    url, work = loaded
    dbt_build(url, work, NOW, full_refresh=True)
    assert monthly(url) == mapped


def test_without_a_mapping_customers_stay_apart(mapped, loaded):
    url, work = loaded
    load_finance(url, work, contracts_csv=CONTRACTS)
    dbt_build(url, work, NOW)  # the mapping gone: a full batch
    apart = monthly(url)
    assert {month: apart[month] for month in APART} == APART
    assert apart["2025-12-01"][0] == "1030"  # the same MRR, counted apart
    load_finance(url, work, contracts_csv=CONTRACTS, customer_mapping_csv=MAPPING)
    dbt_build(url, work, NOW)
    assert monthly(url) == mapped


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ("us,cus_1,\n", "line 2: customer_key is empty"),
        ("US,cus_1,acme\n", "line 2: billing_account must be a Stripe account's name or contracts, got 'US'"),
        ("us,cus_1,acme\nus,cus_1,globex\n", "line 3: us cus_1 repeats line 2"),
    ],
)
def test_a_bad_mapping_names_the_file_and_line(tmp_path, rows, message):
    path = tmp_path / "mapping.csv"
    path.write_text("billing_account,customer_id,customer_key\n" + rows)
    with pytest.raises(FinanceFileError) as raised:
        list(customer_mapping_rows(path))
    assert str(raised.value) == f"{path} {message}" or message in str(raised.value)
