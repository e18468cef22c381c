"""What BI tools read (schema `marts`) changes all at once, or not at all when a blocking test fails
(macros/publish.sql; README "Operating it in Dagster").

The account: cus_a $100/month and cus_b $200/month from 2025-06-01, "today" 2025-12-15, then a day later.
The run that fails: cus_a's first renewal invoice (July) was voided (a change every MRR mart shows), and the
engine's movements table holds a movement of cus_b that does not chain (999 -> 1000 after 200), so the
blocking test assert_mrr_movements_chain fails after the engine and the mart tables were rebuilt.
"""

from __future__ import annotations

from decimal import Decimal

import psycopg2
import pytest

from saas_metrics.demo.billing import Account, Item
from saas_metrics.demo.store import Store
from saas_metrics.warehouse import create_bi_role
from tests.conftest import query
from tests.support.clock import ts
from tests.support.pipeline import dbt_build, load_stripe

NOW = ts("2025-12-15")
NEXT_DAY = ts("2025-12-16")
START = ts("2025-06-01")


def relations(url: str, schema: str) -> list[str]:
    return [
        name
        for (name,) in query(
            url, "select table_name from information_schema.tables where table_schema = %s order by 1", (schema,)
        )
    ]


def digest(url: str, relation: str) -> tuple:
    rows = "md5(coalesce(string_agg(t::text, ',' order by t::text), ''))"
    return query(url, f"select count(*), {rows} from {relation} as t")[0]


def digests(url: str, schema: str = "marts") -> dict[str, tuple]:
    return {name: digest(url, f"{schema}.{name}") for name in relations(url, schema)}


def readable_by(role_url: str, names: list[str]) -> list[str]:
    """The marts the BI role can select from."""
    readable = []
    for name in names:
        with psycopg2.connect(role_url) as conn, conn.cursor() as cur:
            try:
                cur.execute(f"select count(*) from marts.{name}")
                readable.append(name)
            except psycopg2.errors.InsufficientPrivilege:
                pass
    return readable


@pytest.fixture
def account(tmp_path):
    store = Store(tmp_path / "stripe.sqlite")
    acct = Account(store, NEXT_DAY, id_prefix="P")
    product = acct.product("Product", START, id="prod_pub")
    m100 = acct.price(product, 10000, START, id="price_pub100")
    m200 = acct.price(product, 20000, START, id="price_pub200")
    acct.subscribe(acct.customer(START, id="cus_a"), [Item(m100)], START).finish()
    acct.subscribe(acct.customer(START, id="cus_b"), [Item(m200)], START).finish()
    acct.flush()
    return store


def test_a_failed_build_publishes_nothing_and_the_next_good_one_everything(account, fresh_database, tmp_path):
    url = fresh_database("publish")
    load_stripe(account, url, tmp_path, NOW)
    bi_url = create_bi_role(url, "bi_publish_test").url
    dbt_build(url, tmp_path, NOW)
    before = digests(url)
    assert {"mrr_movements", "mrr_monthly", "customer_mrr_monthly", "customer_mrr_current", "mrr_by_plan"} <= set(
        before
    )
    assert {"cohort_retention", "saas_kpis_monthly", "account_health"} <= set(before)
    assert readable_by(bi_url, list(before)) == list(before)

    (voided,) = query(
        url,
        "select invoice_id from staging.stg_stripe__invoices where customer_id = 'cus_a' "
        "and billing_reason = 'subscription_cycle' order by created_at limit 1",
    )[0]
    query(
        url,
        "update raw_stripe.invoices set status = 'void', synced_at = synced_at + interval '1 day', "
        "data = jsonb_set(data, '{status}', '\"void\"') where id = %s returning id",
        (voided,),
    )
    broken_chain = """
        insert into intermediate.int_customer_mrr_movements (customer_id, movement_date, movement_month,
            movement_type, currency, mrr_before_local, mrr_after_local, mrr_change_local, fx_rate, mrr_before,
            mrr_after, mrr_change, engine_batch_at)
        select customer_id, date '2025-11-20', date '2025-11-01', 'expansion', currency, 999, 1000, 1, 1, 999,
            1000, 1, engine_batch_at
        from intermediate.int_customer_mrr_movements where customer_id = 'cus_b' limit 1
        returning customer_id
    """
    query(url, broken_chain)
    with pytest.raises(AssertionError, match="assert_mrr_movements_chain"):
        dbt_build(url, tmp_path, NEXT_DAY)
    # the build ran (its own schema has the void and the broken movement), yet marts did not move at all
    built = digests(url, "marts_build")
    assert built["mrr_movements"] != before["mrr_movements"]
    assert built["mrr_monthly"] != before["mrr_monthly"]
    assert digests(url) == before

    query(url, "delete from intermediate.int_customer_mrr_movements where mrr_before_local = 999 returning 1")
    dbt_build(url, tmp_path, NEXT_DAY)
    after = digests(url)
    assert set(after) == set(before)
    changed = {name for name in after if after[name] != before[name]}
    assert {"mrr_movements", "mrr_monthly", "customer_mrr_monthly", "customer_mrr_current"} <= changed
    # cus_a's voided July period: no MRR from 2025-07-01 until its next period, 2025-08-01
    assert query(
        url,
        "select movement_date::text, movement_type, mrr_after from marts.mrr_movements "
        "where customer_id = 'cus_a' order by movement_date",
    ) == [
        ("2025-06-01", "new", Decimal("100.0000")),
        ("2025-07-01", "churn", Decimal("0.0000")),
        ("2025-08-01", "reactivation", Decimal("100.0000")),
    ]
    # every published mart equals what the build made, the views over the engine's tables included
    assert after == digests(url, "marts_build")
    assert digest(url, "marts.mrr_movements") == digest(
        url,
        "(select m.customer_id, m.movement_date, m.movement_month, m.movement_type, m.mrr_before, m.mrr_after, "
        "m.mrr_change, m.currency, m.mrr_before_local, m.mrr_after_local, m.mrr_change_local, m.fx_rate, c.churn_type "
        "from intermediate.int_customer_mrr_movements as m left join intermediate.int_customer_churn_causes as c "
        "using (customer_id, movement_date))",
    )
    assert readable_by(bi_url, list(after)) == list(after)
    # the published copies have the engine tables' indexes (one customer's history stays an index scan)
    indexes = "select count(*) from pg_indexes where schemaname = 'intermediate' and tablename = %s"
    for table in (
        "int_customer_mrr_movements",
        "int_customer_churn_causes",
        "int_customer_mrr_monthly",
        "int_customer_mrr_current",
    ):
        assert query(url, indexes, (f"{table}__published",)) == query(url, indexes, (table,)) != [(0,)]


def test_published_copies_follow_rows_deleted_without_replacement(account, fresh_database, tmp_path):
    """A published copy is brought up to date by customer (rows written since the last publish); a row the
    engine deleted without writing another for its customer is caught by the row counts: copied whole."""
    url = fresh_database("publish_copies")
    load_stripe(account, url, tmp_path, NOW)
    dbt_build(url, tmp_path, NOW)
    query(url, "delete from intermediate.int_customer_mrr_current where customer_id = 'cus_b' returning 1")
    dbt_build(url, tmp_path, NOW, select="customer_mrr_current")
    assert [c for (c,) in query(url, "select customer_id from marts.customer_mrr_current")] == ["cus_a"]
    assert digests(url) == digests(url, "marts_build")
