"""Several Stripe accounts in one warehouse (README "Several Stripe accounts", METRICS.md "Several billing
accounts"): a US account in USD and an EU account in EUR, each served over Stripe's protocol by a server of its
own, loaded by the dlt source into the same raw tables, built by dbt. Both accounts use the price id
`price_pro` and the product id `prod_main` for different things (ids are the account's to choose): keys are
(account, id). Numbers worked out by hand beside each assertion; EUR is 1.13 USD through 2025 (the fx seed).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from saas_metrics import runtime
from saas_metrics.config import LEGACY_STRIPE_ACCOUNT, ConfigError, load_settings
from saas_metrics.demo.billing import Account, Item
from saas_metrics.demo.server import StripeProtocolServer
from saas_metrics.demo.store import Store
from tests.conftest import n, query
from tests.support.clock import ts
from tests.support.pipeline import API_KEY, dbt_build, load_from, load_stripe

NOW = ts("2025-12-15")
START = ts("2025-01-01")
EU_KEY = "sk_test_eu_entity"


def us_account(store: Store) -> None:
    # cus_us_1: Pro at $80 a month from 2025-03-01; cus_us_2: Team at $100 a month from 2025-06-10
    acct = Account(store, NOW, id_prefix="us")
    product = acct.product("Pro (US)", START, id="prod_main")
    pro = acct.price(product, 8000, START, id="price_pro")
    team = acct.price(acct.product("Team", START, id="prod_team"), 10000, START, id="price_team")
    acct.subscribe(acct.customer(ts("2025-03-01"), id="cus_us_1"), [Item(pro)], ts("2025-03-01")).finish()
    acct.subscribe(acct.customer(ts("2025-06-10"), id="cus_us_2"), [Item(team)], ts("2025-06-10")).finish()
    acct.flush()


def eu_account(store: Store, with_second: bool = False) -> None:
    # cus_eu_1: Pro at EUR 25 a month from 2025-04-05 (the same price and product ids as the US account's);
    # with_second: cus_eu_2 at EUR 50 a month from 2025-12-02
    acct = Account(store, NOW, id_prefix="eu")
    product = acct.product("Pro (EU)", START, id="prod_main")
    pro = acct.price(product, 2500, START, currency="eur", id="price_pro")
    business = acct.price(product, 5000, START, currency="eur", id="price_business")
    customer = acct.customer(ts("2025-04-05"), id="cus_eu_1", currency="eur", country="DE")
    acct.subscribe(customer, [Item(pro)], ts("2025-04-05")).finish()
    if with_second:
        customer = acct.customer(ts("2025-12-02"), id="cus_eu_2", currency="eur", country="FR")
        acct.subscribe(customer, [Item(business)], ts("2025-12-02")).finish()
    acct.flush()


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    work = tmp_path_factory.mktemp("accounts")
    us, eu = Store(work / "us.sqlite"), Store(work / "eu.sqlite")
    us_account(us)
    eu_account(eu)
    return us, eu, work


@pytest.fixture(scope="module")
def warehouse(stores, fresh_database):
    us, eu, work = stores
    url = fresh_database("accounts")
    load_stripe(us, url, work, NOW, account="us", pipeline_name="stripe__us")
    load_stripe(eu, url, work, NOW, account="eu", pipeline_name="stripe__eu", api_key=EU_KEY)
    dbt_build(url, work, NOW)
    return url


def month_mrr(url: str, month: str) -> str:
    return n(query(url, "select ending_mrr from marts.mrr_monthly where month = %s", (month,))[0][0])


def test_every_raw_row_carries_its_account(warehouse):
    rows = dict(query(warehouse, "select account, count(*) from raw_stripe.customers group by 1"))
    assert rows == {"us": 2, "eu": 1}
    # one price id in two accounts: two rows, two prices
    prices = query(
        warehouse,
        "select billing_account, currency, unit_amount_cents from staging.stg_stripe__prices"
        " where price_id = 'price_pro' order by 1",
    )
    assert [(a, c, n(cents)) for a, c, cents in prices] == [("eu", "eur", "2500"), ("us", "usd", "8000")]
    assert dict(query(warehouse, "select account, count(*) from raw_stripe.invoice_lines group by 1")) == {
        # US: cus_us_1 monthly from March (10 invoices to Dec), cus_us_2 from June 10 (7); EU: April 5 on (9)
        "us": 17,
        "eu": 9,
    }


def test_customer_marts_name_the_account_and_total_in_usd(warehouse):
    current = query(
        warehouse, "select customer_id, billing_account, mrr, currency, mrr_local from marts.customer_mrr_current"
    )
    assert sorted((c, a, n(m), cur, n(local)) for c, a, m, cur, local in current) == [
        ("cus_eu_1", "eu", "28.25", "eur", "25"),  # EUR 25 x 1.13
        ("cus_us_1", "us", "80", "usd", "80"),
        ("cus_us_2", "us", "100", "usd", "100"),
    ]
    monthly = query(
        warehouse,
        "select distinct customer_id, billing_account from marts.customer_mrr_monthly order by 1",
    )
    assert monthly == [("cus_eu_1", "eu"), ("cus_us_1", "us"), ("cus_us_2", "us")]
    lifetime = query(warehouse, "select customer_id, billing_account, plan from marts.customer_lifetime order by 1")
    # each customer's plan is its own account's product of that id
    assert lifetime == [("cus_eu_1", "eu", "Pro (EU)"), ("cus_us_1", "us", "Pro (US)"), ("cus_us_2", "us", "Team")]


def test_totals_across_accounts(warehouse):
    # March: cus_us_1 80; April: + cus_eu_1 28.25 = 108.25; June on: + cus_us_2 100 = 208.25
    assert month_mrr(warehouse, "2025-03-01") == "80"
    assert month_mrr(warehouse, "2025-04-01") == "108.25"
    assert month_mrr(warehouse, "2025-11-01") == "208.25"
    assert month_mrr(warehouse, "2025-12-01") == "208.25"
    new = query(
        warehouse,
        "select movement_date::text, customer_id, mrr_change from marts.mrr_movements"
        " where movement_type = 'new' order by 1",
    )
    assert [(d, c, n(m)) for d, c, m in new] == [
        ("2025-03-01", "cus_us_1", "80"),
        ("2025-04-05", "cus_eu_1", "28.25"),
        ("2025-06-10", "cus_us_2", "100"),
    ]


def test_plans_are_per_account(warehouse):
    plans = query(
        warehouse,
        "select billing_account, price_id, product_name, mrr, customers from marts.mrr_by_plan"
        " where month = '2025-12-01' order by 1, 2",
    )
    assert [(a, p, name, n(m), c) for a, p, name, m, c in plans] == [
        ("eu", "price_pro", "Pro (EU)", "28.25", 1),
        ("us", "price_pro", "Pro (US)", "80", 1),
        ("us", "price_team", "Team", "100", 1),
    ]


def test_the_account_is_a_segment_dimension(warehouse):
    segments = query(
        warehouse,
        "select segment, mrr, customers from marts.mrr_by_segment"
        " where month = '2025-12-01' and dimension = 'billing_account' order by 1",
    )
    # US 80 + 100 = 180 (2 customers), EU 28.25 (1): adding up to 208.25
    assert [(s, n(m), c) for s, m, c in segments] == [("eu", "28.25", 1), ("us", "180", 2)]
    cohorts = query(
        warehouse,
        "select segment, cohort_customers from marts.cohort_retention_by_segment"
        " where dimension = 'billing_account' and months_since_start = 0 order by cohort_month, segment",
    )
    assert cohorts == [("us", 1), ("eu", 1), ("us", 1)]  # March (us_1), April (eu_1), June (us_2)


def test_one_account_loaded_again_leaves_the_other_and_incremental_equals_rebuild(
    stores, warehouse, fresh_database, tmp_path
):
    """Last of the shared warehouse's tests: it changes it. cus_eu_2 (EUR 50 from Dec 2) joins the EU account;
    the EU account alone is loaded again, the nightly build is incremental, and equals a rebuild."""
    us, eu, work = stores
    eu_account(eu, with_second=True)
    before_us = query(warehouse, "select id, _dlt_load_id from raw_stripe.invoices where account = 'us' order by 1")
    # listed again in full: the store's objects are dated 2025, before the incremental cursor (today)
    load_stripe(eu, warehouse, work, NOW, account="eu", pipeline_name="stripe__eu", api_key=EU_KEY, full_refresh=True)
    # the US rows are as they were: not loaded again, not deleted by the EU merge
    assert query(warehouse, "select id, _dlt_load_id from raw_stripe.invoices where account = 'us' order by 1") == (
        before_us
    )
    dbt_build(warehouse, tmp_path, NOW)
    # December: 208.25 + EUR 50 x 1.13 = 56.50 -> 264.75
    assert month_mrr(warehouse, "2025-12-01") == "264.75"
    assert month_mrr(warehouse, "2025-11-01") == "208.25"
    tables = [
        "marts.mrr_monthly",
        "marts.mrr_movements",
        "marts.customer_mrr_current",
        "marts.customer_mrr_monthly",
        "marts.mrr_by_plan",
        "marts.mrr_by_segment",
        "marts.cohort_retention_by_segment",
    ]
    incremental = {table: sorted(query(warehouse, f"select * from {table}"), key=repr) for table in tables}
    dbt_build(warehouse, tmp_path, NOW, full_refresh=True)
    for table in tables:
        assert incremental[table] == sorted(query(warehouse, f"select * from {table}"), key=repr), table


def test_connected_account_is_read_with_the_stripe_account_header(stores, fresh_database, tmp_path):
    """A platform's key reading a connected account: every request names it (Stripe-Account), and a server that
    requires it refuses requests without it."""
    _, eu, _ = stores
    url = fresh_database("connected")
    with StripeProtocolServer(eu, api_key=API_KEY, now=NOW, stripe_account="acct_1EUentity") as server:
        load_from(server.url, API_KEY, url, tmp_path, account="eu", stripe_account="acct_1EUentity")
        assert query(url, "select account, count(*) from raw_stripe.customers group by 1") == [
            ("eu", eu.count("customer"))
        ]
        from ingestion.stripe import StripeAuthError

        with pytest.raises(Exception) as failure:
            load_from(server.url, API_KEY, url, tmp_path / "again", account="eu", pipeline_name="stripe_other")
        assert any(isinstance(e, StripeAuthError) for e in _chain(failure.value))


def _chain(exc: BaseException):
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


# -- configuration ------------------------------------------------------------------------------------------
def write_accounts(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_accounts_file_is_read_with_keys_from_the_environment(monkeypatch, tmp_path):
    accounts = write_accounts(
        tmp_path / "accounts.toml",
        """
        [[account]]
        name = "us"
        api_key_env = "STRIPE_KEY_US"

        [[account]]
        name = "eu"
        api_key_env = "STRIPE_KEY_EU"
        stripe_account = "acct_1EUentity"
        """,
    )
    monkeypatch.setenv("SAAS_METRICS_STRIPE_ACCOUNTS", str(accounts))
    monkeypatch.setenv("STRIPE_KEY_US", "rk_live_us_secret")
    monkeypatch.setenv("STRIPE_KEY_EU", "rk_live_eu_secret")
    settings = load_settings()
    assert [(a.name, a.api_key, a.stripe_account, a.pipeline_name) for a in settings.stripe_accounts] == [
        ("us", "rk_live_us_secret", None, "stripe__us"),
        ("eu", "rk_live_eu_secret", "acct_1EUentity", "stripe__eu"),
    ]
    assert settings.stripe_configured
    # a key is never shown
    assert "secret" not in repr(settings) and "secret" not in repr(settings.stripe_accounts)


def test_the_old_way_is_one_account_named_default(monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_legacy")
    (account,) = load_settings().stripe_accounts
    assert (account.name, account.api_key, account.pipeline_name) == (LEGACY_STRIPE_ACCOUNT, "sk_test_legacy", "stripe")


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ('[[account]]\nname = "us"\napi_key_env = "K_US"\n', {}, "account 'us': K_US (its api_key_env) is not set"),
        ('[[account]]\nname = "us"\napi_key = "sk_live_x"\n', {}, "account 'us': never write a key in the file"),
        ('[[account]]\nname = "US main"\napi_key_env = "K"\n', {"K": "k"}, "account 'US main': name must be"),
        (
            '[[account]]\nname = "us"\napi_key_env = "K"\n[[account]]\nname = "us"\napi_key_env = "K"\n',
            {"K": "k"},
            "account 'us': listed twice",
        ),
        (
            '[[account]]\nname = "eu"\napi_key_env = "K"\nstripe_account = "eu"\n',
            {"K": "k"},
            "account 'eu': stripe_account must be a connected account id",
        ),
        ('[[account]]\nname = "eu"\napi_key_env = "K"\ncolour = 1\n', {"K": "k"}, "unknown setting(s) colour"),
        ("name = 1\n", {}, "expected one [[account]] table per Stripe account"),
        ("[[account\n", {}, "not a TOML file"),
    ],
)
def test_accounts_file_errors_name_the_file_and_the_account(monkeypatch, tmp_path, text, env, message):
    path = tmp_path / "accounts.toml"
    path.write_text(text)
    monkeypatch.setenv("SAAS_METRICS_STRIPE_ACCOUNTS", str(path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith(f"{path}: ")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_missing_accounts_file_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("SAAS_METRICS_STRIPE_ACCOUNTS", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="SAAS_METRICS_STRIPE_ACCOUNTS names .*nope.toml.*, which is not a file"):
        load_settings()


# -- through Dagster ------------------------------------------------------------------------------------------
def test_a_refused_account_is_named_and_the_others_kept(stores, fresh_database, monkeypatch, tmp_path):
    """The refresh job with two accounts, the EU key refused: the step fails naming eu, is not retried (a
    refused key will not get better), the US rows are loaded and kept, nothing is built. With the key fixed the
    next run loads both, each by its own dlt pipeline (its own incremental state)."""
    us, eu, _ = stores
    url = fresh_database("accounts_dagster")
    with (
        StripeProtocolServer(us, api_key=API_KEY, now=NOW) as us_server,
        StripeProtocolServer(eu, api_key=EU_KEY, now=NOW) as eu_server,
    ):
        accounts = write_accounts(
            tmp_path / "accounts.toml",
            f"""
            [[account]]
            name = "us"
            api_key_env = "STRIPE_KEY_US"
            api_base = "{us_server.url}"

            [[account]]
            name = "eu"
            api_key_env = "STRIPE_KEY_EU"
            api_base = "{eu_server.url}"
            """,
        )
        monkeypatch.setenv("DATABASE_URL", url)
        monkeypatch.setenv("SAAS_METRICS_STRIPE_ACCOUNTS", str(accounts))
        monkeypatch.setenv("STRIPE_KEY_US", API_KEY)
        monkeypatch.setenv("STRIPE_KEY_EU", "sk_test_revoked")
        monkeypatch.setenv("STRIPE_MAX_RPS", "2000")
        monkeypatch.setenv("SAAS_METRICS_HOME", str(tmp_path / "home"))
        runtime.settings.cache_clear()
        runtime.prepare_environment()
        from orchestration.definitions import defs

        job = defs.resolve_job_def("refresh_job")
        with dg.DagsterInstance.ephemeral() as instance:
            result = job.execute_in_process(instance=instance, raise_on_error=False)
            assert not result.success
            assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
            failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
            message = failure.event_specific_data.error.message
            assert "Stripe account(s) failed to load: eu (invalid Stripe API key" in message
            assert "the others (us) are loaded and kept" in message
            assert query(url, "select account, count(*) from raw_stripe.customers group by 1") == [("us", 2)]
            assert query(url, "select count(*) from information_schema.schemata where schema_name = 'marts'") == [(0,)]

            monkeypatch.setenv("STRIPE_KEY_EU", EU_KEY)
            runtime.settings.cache_clear()
            result = job.execute_in_process(instance=instance, raise_on_error=False)
            assert result.success
        accounts_loaded = dict(query(url, "select account, count(*) from raw_stripe.customers group by 1"))
        assert accounts_loaded == {"us": 2, "eu": eu.count("customer")}
        assert query(url, "select count(distinct billing_account) from marts.customer_mrr_current") == [(2,)]
        pipelines = tmp_path / "home" / "dlt"
        assert (pipelines / "stripe__us").is_dir() and (pipelines / "stripe__eu").is_dir()
        assert not (pipelines / "stripe").exists()


def test_rows_loaded_before_accounts_are_the_default_account(stores, fresh_database, tmp_path):
    """A warehouse loaded before raw rows had an account: its tables gain the column, their rows marked
    'default', and the next load of the legacy account merges onto them (no duplicate)."""
    from ingestion import stripe
    from ingestion.raw_tables import add_missing_column

    us, _, work = stores
    url = fresh_database("accounts_legacy")
    load_stripe(us, url, tmp_path, NOW)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        for table in stripe.TABLES.columns:
            cur.execute(f"alter table raw_stripe.{table} drop column account")
    changed = add_missing_column(url, stripe.TABLES, "account", LEGACY_STRIPE_ACCOUNT)
    assert sorted(changed) == sorted(stripe.TABLES.columns)
    assert add_missing_column(url, stripe.TABLES, "account", LEGACY_STRIPE_ACCOUNT) == []
    count = query(url, "select count(*) from raw_stripe.invoices")[0][0]
    assert query(url, "select distinct account from raw_stripe.invoices") == [(LEGACY_STRIPE_ACCOUNT,)]
    load_stripe(us, url, tmp_path, NOW, full_refresh=True)
    assert query(url, "select count(*) from raw_stripe.invoices")[0][0] == count
