"""Contracts billed outside Stripe (README "Contracts outside Stripe", METRICS.md "Contracts outside Stripe" and
"The billing contract"): a contracts file, one row per version, loaded by the finance source beside a Stripe
account served over Stripe's protocol, built by dbt into the same engine. Numbers worked out by hand beside each
assertion; EUR is 1.13 USD through 2025 (the fx seed).

The account, as of 2025-12-15:
- Stripe: cus_us_1 on Pro at $80 a month from 2025-03-01.
- c-acme (Acme Corp): Enterprise at $12,000 a year x 10 seats from 2025-02-01 (MRR 12,000 x 10 / 12 = 10,000),
  amended on 2025-07-01 to 15 seats at 10% off (12,000 x 15 x 0.9 / 12 = 13,500: expansion 3,500), open-ended.
- c-globex (Globex GmbH, DE): EUR 3,000 a quarter from 2025-04-01 (EUR 1,000 a month = $1,130), ending 2025-09-01.
- c-initech (Initech): Support at $500 a month from 2025-05-01 to 2025-06-01, then again from 2025-08-01.
"""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest

from ingestion.finance import FinanceFileError
from ingestion.finance.helpers import contract_rows
from saas_metrics.config import ConfigError, load_settings
from saas_metrics.demo.billing import Account, Item
from saas_metrics.demo.store import Store
from tests.conftest import n, query
from tests.support.clock import ts
from tests.support.pipeline import dbt_build, load_finance, load_stripe

NOW = ts("2025-12-15")
START = ts("2025-01-01")
HEADER = (
    "contract_id,customer_id,customer_name,country,plan,amount,currency,interval,interval_count,quantity,"
    "discount_percent,start_date,end_date\n"
)
CONTRACTS = HEADER + (
    "c-acme,acme,Acme Corp,US,Enterprise,12000,usd,year,1,10,0,2025-02-01,2025-07-01\n"
    "c-acme,acme,Acme Corp,US,Enterprise,12000,usd,year,1,15,10,2025-07-01,\n"
    "c-globex,globex,Globex GmbH,DE,Enterprise EU,3000,eur,month,3,1,,2025-04-01,2025-09-01\n"
    "c-initech,initech,Initech,US,Support,500,usd,month,,,,2025-05-01,2025-06-01\n"
    "c-initech,initech,Initech,US,Support,500,usd,month,1,1,0,2025-08-01,\n"
)
# month: (ending MRR, new, expansion, reactivation, churned)
EXPECTED = {
    "2025-02-01": ("10000", "10000", "0", "0", "0"),  # acme
    "2025-03-01": ("10080", "80", "0", "0", "0"),  # + cus_us_1
    "2025-04-01": ("11210", "1130", "0", "0", "0"),  # + globex EUR 1,000 x 1.13
    "2025-05-01": ("11710", "500", "0", "0", "0"),  # + initech
    "2025-06-01": ("11210", "0", "0", "0", "500"),  # initech's first version ended June 1
    "2025-07-01": ("14710", "0", "3500", "0", "0"),  # acme's amendment: 13,500 - 10,000
    "2025-08-01": ("15210", "0", "0", "500", "0"),  # initech back
    "2025-09-01": ("14080", "0", "0", "0", "1130"),  # globex ended September 1
    "2025-12-01": ("14080", "0", "0", "0", "0"),
}


def stripe_account(store: Store) -> None:
    acct = Account(store, NOW, id_prefix="us")
    pro = acct.price(acct.product("Pro", START, id="prod_pro"), 8000, START, id="price_pro")
    acct.subscribe(acct.customer(ts("2025-03-01"), id="cus_us_1"), [Item(pro)], ts("2025-03-01")).finish()
    acct.flush()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, fresh_database):
    """The Stripe account and the contracts file loaded, nothing built yet."""
    work = tmp_path_factory.mktemp("contracts")
    store = Store(work / "stripe.sqlite")
    stripe_account(store)
    url = fresh_database("contracts")
    load_stripe(store, url, work, NOW)
    load_finance(url, work, contracts_csv=CONTRACTS)
    return url, work


JUNE: dict[str, tuple[str, ...]] = {}


@pytest.fixture(scope="module")
def warehouse(loaded):
    url, work = loaded
    # first built in June, then incrementally in December: the later versions' starts and ends are reached by
    # "today" moving on, with no load in between
    dbt_build(url, work, ts("2025-06-15"))
    JUNE.update(monthly(url))
    dbt_build(url, work, NOW)
    return url


def monthly(url: str) -> dict[str, tuple[str, ...]]:
    rows = query(
        url,
        "select month::text, ending_mrr, new_mrr, expansion_mrr, reactivation_mrr, churned_mrr from marts.mrr_monthly",
    )
    return {row[0]: tuple(n(v) for v in row[1:]) for row in rows}


def test_contracts_enter_the_engine_with_stripe(warehouse):
    months = monthly(warehouse)
    assert {month: months[month] for month in EXPECTED} == EXPECTED


def test_the_june_build_saw_june(warehouse):
    # as of 2025-06-15: acme 10,000, cus_us_1 80, globex 1,130 (its end in September still ahead), initech ended
    assert sorted(JUNE) == [f"2025-0{m}-01" for m in range(2, 7)]
    assert JUNE["2025-06-01"] == EXPECTED["2025-06-01"]


def test_contract_customers_are_customers(warehouse):
    current = query(
        warehouse,
        "select customer_id, billing_account, country, currency, mrr_local, mrr, paying_subscriptions"
        " from marts.customer_mrr_current order by customer_id",
    )
    assert [(c, a, country, cur, n(local), n(mrr), subs) for c, a, country, cur, local, mrr, subs in current] == [
        ("contracts:acme", "contracts", "US", "usd", "13500", "13500", 1),
        ("contracts:globex", "contracts", "DE", "eur", "0", "0", 0),  # churned in September
        ("contracts:initech", "contracts", "US", "usd", "500", "500", 1),
        ("cus_us_1", "default", "US", "usd", "80", "80", 1),
    ]
    names = query(
        warehouse,
        "select customer_name from intermediate.billing_customers where billing_source = 'contracts' order by 1",
    )
    assert names == [("Acme Corp",), ("Globex GmbH",), ("Initech",)]
    # globex churned in September: in the lifetime mart as churned, its plan the contract's
    lifetime = query(
        warehouse,
        "select customer_id, plan, churn_date::text from marts.customer_lifetime"
        " where customer_id = 'contracts:globex'",
    )
    assert lifetime == [("contracts:globex", "Enterprise EU", "2025-09-01")]


def test_plans_and_the_account_dimension(warehouse):
    plans = query(
        warehouse,
        "select billing_account, price_id, mrr, subscriptions from marts.mrr_by_plan where month = '2025-12-01'"
        " and mrr > 0 order by 1, 2",
    )
    assert [(a, p, n(m), s) for a, p, m, s in plans] == [
        ("contracts", "Enterprise", "13500", 1),
        ("contracts", "Support", "500", 1),
        ("default", "price_pro", "80", 1),
    ]
    by_account = query(
        warehouse,
        "select segment, mrr from marts.mrr_by_segment where month = '2025-12-01'"
        " and dimension = 'billing_account' order by 1",
    )
    assert [(v, n(m)) for v, m in by_account] == [("contracts", "14000"), ("default", "80")]


def test_contracts_are_not_reconciled_against_stripe_invoices(warehouse):
    causes = query(warehouse, "select customer_id, cause from intermediate.int_stripe_reconciliation order by 1")
    assert causes == [("cus_us_1", "matched")]


def test_incremental_equals_a_rebuild(warehouse, loaded):
    url, work = loaded
    before = monthly(url)
    dbt_build(url, work, NOW, full_refresh=True)
    assert monthly(url) == before


def test_an_edited_file_rebuilds_what_it_changed(warehouse, loaded):
    # globex extended: its second version from 2025-09-01, open-ended, at EUR 1,500 a month (1,695): September
    # is an expansion of 565 instead of a churn of 1,130
    url, work = loaded
    edited = CONTRACTS + "c-globex,globex,Globex GmbH,DE,Enterprise EU,1500,eur,month,1,1,0,2025-09-01,\n"
    load_finance(url, work, contracts_csv=edited)
    dbt_build(url, work, NOW)
    months = monthly(url)
    assert months["2025-09-01"] == ("15775", "0", "565", "0", "0")  # 15,210 + 565
    assert months["2025-12-01"][0] == "15775"
    incremental = months
    dbt_build(url, work, NOW, full_refresh=True)
    assert monthly(url) == incremental
    load_finance(url, work, contracts_csv=CONTRACTS)  # back as the other tests expect
    dbt_build(url, work, NOW)
    assert monthly(url)["2025-09-01"] == EXPECTED["2025-09-01"]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            "c-1,acme,Acme,US,Enterprise,12000,usd,quarter,1,1,0,2025-02-01,\n",
            "line 2: interval must be one of month, year, week, day, got 'quarter'",
        ),
        ("c-1,acme,Acme,US,Enterprise,-1,usd,month,1,1,0,2025-02-01,\n", "line 2: amount must not be negative"),
        ("c-1,acme,Acme,US,Enterprise,10,usd,month,1,1,0,2025-02-30,\n", "line 2: start_date must be a date"),
        ("c-1,acme,Acme,US,Enterprise,10,usd,month,1,1,0,2025-02-01,2025-01-01\n", "line 2: end_date 2025-01-01"),
        ("c-1,acme,Acme,US,Enterprise,10,usd,month,0,1,0,2025-02-01,\n", "line 2: interval_count must be a whole"),
        ("c-1,acme,Acme,US,Enterprise,10,usd,month,1,1,120,2025-02-01,\n", "line 2: discount_percent is a percent"),
        ("c-1,,Acme,US,Enterprise,10,usd,month,1,1,0,2025-02-01,\n", "line 2: customer_id is empty"),
        (
            "c-1,acme,Acme,US,Pro,10,usd,month,1,1,0,2025-02-01,2025-06-01\n"
            "c-1,acme,Acme,US,Pro,10,usd,month,1,1,0,2025-05-01,\n",
            "line 3: contract c-1 starts 2025-05-01, before the version of line 2 ends (2025-06-01)",
        ),
        (
            "c-1,acme,Acme,US,Pro,10,usd,month,1,1,0,2025-02-01,\nc-1,acme,Acme,US,Pro,10,eur,month,1,1,0,2025-05-01,\n",
            "line 3: contract c-1 changes its currency (line 2: usd, here: eur)",
        ),
        (
            "c-1,acme,Acme,US,Pro,10,usd,month,1,1,0,2025-02-01,\n"
            "c-2,acme,ACME Inc,US,Pro,10,usd,month,1,1,0,2025-05-01,\n",
            "line 3: customer acme has another name or country on line 2",
        ),
    ],
)
def test_a_bad_file_names_the_file_and_line(tmp_path, row, message):
    path = tmp_path / "contracts.csv"
    path.write_text(HEADER + row)
    with pytest.raises(FinanceFileError) as raised:
        list(contract_rows(path))
    assert str(raised.value).startswith(f"{path} ")
    assert message in str(raised.value)


def test_a_bad_header_is_named(tmp_path):
    path = tmp_path / "contracts.csv"
    path.write_text("contract_id,customer_id,amount\n")
    with pytest.raises(FinanceFileError, match=r"line 1: header must be contract_id,customer_id,customer_name,"):
        list(contract_rows(path))


def test_no_stripe_account_may_be_named_contracts(tmp_path, monkeypatch):
    accounts = tmp_path / "accounts.toml"
    accounts.write_text('[[account]]\nname = "contracts"\napi_key_env = "KEY_C"\n')
    monkeypatch.setenv("KEY_C", "rk_test_c")
    monkeypatch.setenv("SAAS_METRICS_STRIPE_ACCOUNTS", str(accounts))
    with pytest.raises(ConfigError, match="account 'contracts': the name 'contracts' is the contracts file's"):
        load_settings()


def test_the_report_splits_mrr_by_account(warehouse):
    import psycopg2

    from saas_metrics.analytics import report

    with psycopg2.connect(warehouse) as conn:
        data = report.load(conn)
    # the last complete month, November: contracts 13,500 + 500, Stripe 80
    assert data.month.isoformat() == "2025-11-01"
    assert data.figures["mrr_by_account"] == {"contracts": 14000.0, "default": 80.0}
    assert report.account_rows(data) == [["contracts", "2", "14,000.00", "99.4%"], ["default", "1", "80.00", "0.6%"]]
    assert 'id="mrr-by-account"' in report.render_html(data)


# How a build replaces the views it built (dbt_project/macros/replacing_relations.sql), on this warehouse: the
# billing contract's views read two staging views each, the very shape that deadlocked two threads of a refresh.
BILLING_VIEWS = ("billing_customers", "billing_prices", "billing_products", "billing_subscriptions")


def relation_oids(url: str) -> dict[str, int]:
    rows = query(
        url,
        "select relname, oid::int from pg_class where relnamespace = 'intermediate'::regnamespace"
        " and relname = any(%s)",
        (list(BILLING_VIEWS),),
    )
    return dict(rows)


def test_a_rebuilt_staging_view_keeps_the_views_that_read_it(loaded, warehouse):
    _, work = loaded
    before = relation_oids(warehouse)
    assert sorted(before) == sorted(BILLING_VIEWS)
    dbt_build(warehouse, work, NOW, select="stg_finance__contracts stg_finance__customer_mapping")
    # replaced in place: the same four views, not dropped by a cascade (which a build of these two alone never
    # rebuilt), and reading the new definitions
    assert relation_oids(warehouse) == before
    contract_customers = "select count(*) from intermediate.billing_customers where billing_source = 'contracts'"
    assert query(warehouse, contract_customers) == [(3,)]


def test_a_staging_view_whose_columns_changed_is_swapped(loaded, warehouse):
    _, work = loaded
    # the view as an older version of the model left it: a column under another name
    with psycopg2.connect(warehouse) as conn, conn.cursor() as cur:
        cur.execute("alter view staging.stg_finance__customer_mapping rename column customer_id to old_name")
    before = relation_oids(warehouse)
    dbt_build(warehouse, work, NOW, select="stg_finance__customer_mapping billing_customers billing_subscriptions")
    columns = query(
        warehouse,
        "select column_name from information_schema.columns"
        " where table_schema = 'staging' and table_name = 'stg_finance__customer_mapping' order by ordinal_position",
    )
    assert ("customer_id",) in columns and ("old_name",) not in columns
    # swapped as dbt swaps it: the two views reading it went with the old one (a cascade), the build made them
    # again; the two that do not read it stayed
    after = relation_oids(warehouse)
    assert sorted(after) == sorted(BILLING_VIEWS)
    remade = {name for name in BILLING_VIEWS if after[name] != before[name]}
    assert remade == {"billing_customers", "billing_subscriptions"}


def test_the_drops_of_a_build_take_turns(loaded, warehouse):
    _, work = loaded
    # a session holding the build's drop lock: a rebuilt table's drop of the old one waits for it
    key = "hashtext('saas_metrics: a build drops a relation')"
    holder = psycopg2.connect(warehouse)
    holder.autocommit = True
    outcome: list[object] = []
    with holder.cursor() as cur:
        cur.execute(f"select pg_advisory_lock({key})")
        build = threading.Thread(
            target=lambda: outcome.append(dbt_build(warehouse, work, NOW, select="stg_stripe__invoices_to_restage"))
        )
        build.start()
        waiting = []
        for _ in range(600):
            cur.execute("select count(*) from pg_locks where locktype = 'advisory' and not granted")
            waiting = cur.fetchone()[0]
            if waiting or not build.is_alive():
                break
            time.sleep(0.1)
        assert waiting == 1 and build.is_alive()
        cur.execute(f"select pg_advisory_unlock({key})")
    holder.close()
    build.join(600)
    assert not build.is_alive() and len(outcome) == 1
    # and the build left no old table behind
    assert query(warehouse, "select count(*) from pg_class where relname like '%\\_\\_dbt\\_backup'") == [(0,)]
