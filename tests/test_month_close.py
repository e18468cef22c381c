"""Month close (METRICS.md "Month close: as reported and as restated"), on a real PostgreSQL with real dbt builds.

An account is loaded and built on 2025-11-05: October is complete and its figures are kept as reported. Then a
late invoice arrives: cus_late's subscription, started on 2025-10-20 at $200 a month, reaches the warehouse only
with the load of 2025-11-25. October is restated, and the restatement explains the whole difference, by hand:
  as reported: cus_steady 100 (from Aug 1) + cus_september 50 (from Sep 10) = 150, no new MRR in October
  restated:    + cus_late 200 (new on Oct 20) = 350: ending_mrr +200, new_mrr +200, new_customers +1,
               ending_customers 2 -> 3; saas_kpis_monthly mrr 150 -> 350, arr 1,800 -> 4,200, paying customers
               2 -> 3, arpu 75 -> 116.6667, mrr growth 0 -> 350 / 150 - 1 = 1.333333
  customers:   cus_late 0 -> 200, a late invoice: the sum of the customers' differences, 200, is the restatement.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import psycopg2

from saas_metrics.analytics.report.data import card_lines, load
from saas_metrics.analytics.report.html_page import render_html
from saas_metrics.analytics.report.pdf import render_pdf
from saas_metrics.demo.billing import Account, Item
from saas_metrics.demo.store import Store
from tests.conftest import query
from tests.support.clock import ts
from tests.support.pipeline import dbt_build, load_stripe

CLOSED = ts("2025-11-05")
LATER = ts("2025-11-25")


def _account(path, now, with_late: bool) -> Store:
    store = Store(path)
    acct = Account(store, now, id_prefix="C")
    product = acct.product("Plan", ts("2025-01-01"), id="prod_plan")
    m100 = acct.price(product, 10000, ts("2025-01-01"), id="price_m100")
    m50 = acct.price(product, 5000, ts("2025-01-01"), id="price_m50")
    m200 = acct.price(product, 20000, ts("2025-01-01"), id="price_m200")
    acct.subscribe(acct.customer(ts("2025-08-01"), id="cus_steady"), [Item(m100)], ts("2025-08-01")).finish()
    acct.subscribe(acct.customer(ts("2025-09-10"), id="cus_september"), [Item(m50)], ts("2025-09-10")).finish()
    if with_late:  # created last: the other objects keep their ids
        acct.subscribe(acct.customer(ts("2025-10-20"), id="cus_late"), [Item(m200)], ts("2025-10-20")).finish()
    acct.flush()
    return store


def _n(value) -> str:
    return format(Decimal(value).normalize(), "f") if value is not None else "null"


def test_a_late_invoice_restates_a_closed_month_and_explains_the_whole_difference(fresh_database, tmp_path):
    url = fresh_database("month_close")
    work = tmp_path / "work"
    load_stripe(_account(tmp_path / "closed.sqlite", CLOSED, with_late=False), url, work, CLOSED)
    dbt_build(url, work, CLOSED)
    # October is reported (November is not complete on Nov 5); nothing moved yet
    reported = dict(
        query(
            url,
            "select metric, value from history.month_close_metrics where month = '2025-10-01' "
            "and metric in ('mrr_monthly.ending_mrr', 'saas_kpis_monthly.paying_customers')",
        )
    )
    assert {k: _n(v) for k, v in reported.items()} == {
        "mrr_monthly.ending_mrr": "150",
        "saas_kpis_monthly.paying_customers": "2",
    }
    assert query(url, "select max(month)::text from history.month_close") == [("2025-10-01",)]
    assert query(url, "select count(*) from marts.metric_restatements") == [(0,)]

    # the late invoice: a full load on Nov 25 brings cus_late's October subscription; a second publish
    load_stripe(_account(tmp_path / "later.sqlite", LATER, with_late=True), url, work, LATER, full_refresh=True)
    output = dbt_build(url, work, LATER)
    restated = {
        metric: (_n(old), _n(new), _n(diff), material)
        for metric, old, new, diff, material in query(
            url,
            "select metric, reported_value, current_value, difference, is_material from marts.metric_restatements "
            "where month = '2025-10-01'",
        )
    }
    assert restated == {
        "mrr_monthly.ending_mrr": ("150", "350", "200", True),
        "mrr_monthly.new_mrr": ("0", "200", "200", True),
        "mrr_monthly.new_customers": ("0", "1", "1", None),
        "mrr_monthly.ending_customers": ("2", "3", "1", None),
        "saas_kpis_monthly.mrr": ("150", "350", "200", True),
        "saas_kpis_monthly.arr": ("1800", "4200", "2400", True),
        "saas_kpis_monthly.paying_customers": ("2", "3", "1", None),
        "saas_kpis_monthly.arpu": ("75", "116.6667", "41.6667", None),
        "saas_kpis_monthly.new_customers": ("0", "1", "1", None),
        "saas_kpis_monthly.mrr_growth_rate": ("0", "1.333333", "1.333333", None),
    }
    # the customers behind it add up to the whole difference, each with its cause
    customers = query(
        url,
        "select customer_id, reported_mrr, current_mrr, difference, cause from marts.mrr_restatement_customers "
        "where month = '2025-10-01'",
    )
    assert [(c, _n(r), _n(n), _n(d), cause) for c, r, n, d, cause in customers] == [
        ("cus_late", "0", "200", "200", "late_invoice")
    ]
    # the as-reported version did not change, and the warning check names the restatement
    assert query(
        url,
        "select value from history.month_close_metrics where month = '2025-10-01' "
        "and metric = 'mrr_monthly.ending_mrr'",
    ) == [(Decimal("150.0000"),)]
    assert "WARN" in output and "warn_material_restatements" in output
    # the BI role's marts include both
    assert query(
        url,
        "select count(*) from information_schema.tables where table_schema = 'marts' "
        "and table_name in ('metric_restatements', 'mrr_restatement_customers')",
    ) == [(2,)]
    # the report of October says it moved since it was reported, and from what to what
    (published,) = query(url, "select published_at::date from history.month_close where month = '2025-10-01'")[0]
    with psycopg2.connect(url) as conn:
        data = load(conn, dt.date(2025, 10, 1))
    sentence = (
        f"Restated: October 2025 has moved since it was reported on {published:%Y-%m-%d} (MRR 150 -> 350, active "
        "customers 2 -> 3, new MRR 0 -> 200); this report shows the figures as they are today "
        "(marts.metric_restatements, marts.mrr_restatement_customers)."
    )
    assert card_lines(data)[-1] == f"  {sentence}"
    assert 'id="restatement-warning">' + sentence.replace("->", "-&gt;") in render_html(data)
    assert data.figures["restated"]["saas_kpis_monthly.mrr"] == [150.0, 350.0]
    render_pdf(data, tmp_path / "october.pdf")  # the sentence under the PDF's cards
    assert (tmp_path / "october.pdf").stat().st_size > 10_000
