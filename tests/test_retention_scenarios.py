"""Cohorts, retention and unit economics (METRICS.md), on one small account worked out by hand.

The account (USD, "today" frozen at 2026-02-15):
  A  $100/month from 2025-01-05 (10% tax on top), keeps paying
  B  $200/month from 2025-01-10, canceled at once on 2025-03-20; a $50 credit note on its March invoice
  C  2 seats x $50 from 2025-01-15; 6 seats ($300) from 2025-02-15 (prorated)
  D  $100/month from 2025-02-03; downgraded to $50 at the 2025-04-03 renewal
  E  $100/month from 2025-02-07, canceled at once on 2025-02-20 (starts and churns in one month)
  F  14-day trial from 2025-03-01, pays $100/month from 2025-03-15
  G  14-day trial from 2025-03-05, canceled before it ends
  H  45-day trial from 2025-03-10, pays $100/month from 2025-04-24
Finance files: spend $1,000 in 2025-02 and $600 in 2025-04; gross margin 0.8 (Feb), 0.75 (Apr).

Month ends, by hand:
  Jan 2025  A100 B200 C100                 = 400, 3 customers
  Feb 2025  A100 B200 C300 D100 (E 0)      = 700, 4   new D, E; expansion C +200; churn E
  Mar 2025  A100 C300 D100 F100 (B 0)      = 600, 4   churn B -200; new F
  Apr 2025  A100 C300 D50 F100 H100        = 650, 5   contraction D -50; new H
  then unchanged through Feb 2026          = 650, 5
"""

from __future__ import annotations

import pytest

from saas_metrics.demo.billing import Account, Item
from saas_metrics.demo.store import Store
from tests.conftest import n, query
from tests.support.clock import ts
from tests.support.pipeline import scenario_warehouse

NOW = ts("2026-02-15")
T0 = ts("2024-12-01")


def build(store: Store) -> None:
    a = Account(store, NOW, id_prefix="R")
    product = a.product("Team", T0, id="prod_team")
    m100 = a.price(product, 10000, T0, id="price_r100")
    m200 = a.price(product, 20000, T0, id="price_r200")
    m50 = a.price(product, 5000, T0, id="price_r50")
    seat = a.price(product, 5000, T0, id="price_rseat")

    def customer(name, when, channel="organic"):
        return a.customer(when, id=f"cus_{name}", metadata={"channel": channel})

    a.subscribe(customer("A", ts("2025-01-05")), [Item(m100)], ts("2025-01-05"), tax_percent=10.0).finish()
    b = a.subscribe(customer("B", ts("2025-01-10"), "paid_search"), [Item(m200)], ts("2025-01-10"))
    b.cancel(ts("2025-03-20"))
    march = next(o for o in b._out if o.get("object") == "invoice" and o["period_start"] == ts("2025-03-10"))
    b.finish()
    a.credit_note(march, 5000, ts("2025-03-25"))
    c = a.subscribe(customer("C", ts("2025-01-15")), [Item(seat, 2)], ts("2025-01-15"))
    c.change(ts("2025-02-15 12:00"), [Item(seat, 6, id=c.items[0].id)])
    c.finish()
    d = a.subscribe(customer("D", ts("2025-02-03")), [Item(m100)], ts("2025-02-03"))
    d.change_at_renewal(ts("2025-03-20"), [Item(m50, id=d.items[0].id)])
    d.finish()
    e = a.subscribe(customer("E", ts("2025-02-07")), [Item(m100)], ts("2025-02-07"))
    e.cancel(ts("2025-02-20"))
    e.finish()
    a.subscribe(customer("F", ts("2025-03-01")), [Item(m100)], ts("2025-03-01"), trial_days=14).finish()
    g = a.subscribe(customer("G", ts("2025-03-05")), [Item(m100)], ts("2025-03-05"), trial_days=14)
    g.cancel(ts("2025-03-18"))
    g.finish()
    a.subscribe(customer("H", ts("2025-03-10")), [Item(m100)], ts("2025-03-10"), trial_days=45).finish()
    a.flush()


@pytest.fixture(scope="module")
def warehouse(fresh_database, tmp_path_factory, pg):
    files = {
        "spend_csv": "month,channel,amount,currency\n2025-02,paid_search,1000,usd\n2025-04,paid_search,600,usd\n",
        "gross_margin_csv": "month,gross_margin\n2025-02,0.8\n2025-04,0.75\n",
    }
    url, _ = scenario_warehouse("retention", build, NOW, fresh_database, tmp_path_factory, finance_files=files)
    return url


def kpis(url: str, month: str) -> dict:
    columns = [
        "mrr",
        "arr",
        "paying_customers",
        "arpu",
        "logo_churn_rate",
        "gross_mrr_churn_rate",
        "net_mrr_churn_rate",
        "nrr",
        "grr",
        "nrr_trailing_12m",
        "grr_trailing_12m",
        "quick_ratio",
        "ltv",
        "gross_margin",
        "ltv_gross_margin",
        "sales_marketing_spend",
        "new_customers",
        "cac",
        "ltv_to_cac",
        "cac_payback_months",
        "mrr_growth_rate",
    ]
    row = query(url, f"select {', '.join(columns)} from marts.saas_kpis_monthly where month = %s", (month,))[0]
    return {c: n(v) for c, v in zip(columns, row, strict=True)}


def test_february_kpis(warehouse):
    k = kpis(warehouse, "2025-02-01")
    assert (k["mrr"], k["arr"], k["paying_customers"], k["arpu"]) == ("700", "8400", "4", "175")
    # paying at the start: A, B, C; none churned (E started and churned within February: not in the rate)
    assert k["logo_churn_rate"] == "0"
    # churned 100 (E) + contraction 0 over starting 400; net: (100 - 200 expansion) / 400
    assert (k["gross_mrr_churn_rate"], k["net_mrr_churn_rate"]) == ("0.25", "-0.25")
    # A, B, C paid 400 at January's end and 600 now; capped at 400 each: 100 + 200 + 100
    assert (k["nrr"], k["grr"]) == ("1.5", "1")
    # (new 200 + expansion 200) / churned 100
    assert k["quick_ratio"] == "4"
    # no churn in the trailing complete months: LTV is null, not a crash
    assert (k["ltv"], k["ltv_gross_margin"], k["ltv_to_cac"]) == ("null", "null", "null")
    # $1,000 / 2 new customers; payback 500 / (175 x 0.8) = 3.5714
    assert (k["sales_marketing_spend"], k["new_customers"], k["cac"]) == ("1000", "2", "500")
    assert k["cac_payback_months"] == "3.5714"
    # 700 / 400 - 1
    assert k["mrr_growth_rate"] == "0.75"


def test_march_kpis(warehouse):
    k = kpis(warehouse, "2025-03-01")
    # paying at the start: A, B, C, D; B churned: 1 / 4
    assert k["logo_churn_rate"] == "0.25"
    # churned 200 / starting 700 = 0.285714; nothing added back but F (new, not in net churn)
    assert (k["gross_mrr_churn_rate"], k["net_mrr_churn_rate"]) == ("0.285714", "0.285714")
    # A, B, C, D paid 700 at February's end; now 100 + 0 + 300 + 100 = 500
    assert (k["nrr"], k["grr"]) == ("0.714286", "0.714286")
    # new 100 / churned 200; no finance rows for March: CAC is null
    assert (k["quick_ratio"], k["cac"]) == ("0.5", "null")


def test_april_ltv_and_cac(warehouse):
    k = kpis(warehouse, "2025-04-01")
    # logo churn Feb 0, Mar 0.25, Apr 0 (January had nobody at its start): average 0.083333
    # LTV = ARPU 130 / 0.083333 = 1560; x margin 0.75 = 1170; CAC 600 / 1 new (H) = 600
    assert (k["arpu"], k["ltv"], k["ltv_gross_margin"], k["cac"]) == ("130", "1560", "1170", "600")
    assert k["ltv_to_cac"] == "1.95"
    # 600 / (130 x 0.75) = 6.1538
    assert k["cac_payback_months"] == "6.1538"
    # (new 100) / (contraction 50)
    assert k["quick_ratio"] == "2"


def test_ltv_averages_six_complete_months_and_the_current_month_uses_the_last_six(warehouse):
    # June: Feb..Jun (Jan has no rate) = 0.25 / 5 = 0.05 -> 130 / 0.05 = 2600
    assert kpis(warehouse, "2025-06-01")["ltv"] == "2600"
    # July: Feb..Jul = 0.25 / 6 -> 130 / 0.041667 = 3120
    assert kpis(warehouse, "2025-07-01")["ltv"] == "3120"
    # August: Mar..Aug = 0.25 / 6 -> 3120; September: Apr..Sep = 0 -> null
    assert kpis(warehouse, "2025-08-01")["ltv"] == "3120"
    assert kpis(warehouse, "2025-09-01")["ltv"] == "null"


def test_trailing_twelve_month_retention(warehouse):
    # paying in January 2025: A 100, B 200, C 100 = 400; in January 2026: A 100, C 300 = 400
    # NRR 400 / 400 = 1; GRR capped: 100 + 0 + 100 = 200 / 400 = 0.5
    k = kpis(warehouse, "2026-01-01")
    assert (k["nrr_trailing_12m"], k["grr_trailing_12m"]) == ("1", "0.5")
    assert kpis(warehouse, "2025-12-01")["nrr_trailing_12m"] == "null"


def test_cohort_triangle(warehouse):
    rows = {
        (str(r[0]), r[1]): tuple(n(v) for v in r[2:])
        for r in query(
            warehouse,
            "select cohort_month, months_since_start, cohort_customers, active_customers, "
            "logo_retention, cohort_starting_mrr, mrr, revenue_retention, "
            "gross_revenue_retention from marts.cohort_retention",
        )
    }
    # January cohort A, B, C: starts at 400
    assert rows[("2025-01-01", 0)] == ("3", "3", "1", "400", "400", "1", "1")
    assert rows[("2025-01-01", 1)] == ("3", "3", "1", "400", "600", "1.5", "1")
    # March: A 100, C 300 (capped at 100): net 400 / 400, gross 200 / 400, logo 2 / 3
    assert rows[("2025-01-01", 2)] == ("3", "2", "0.6667", "400", "400", "1", "0.5")
    # February cohort D, E (METRICS.md "Cohort retention": one population): E started at 100 and churned
    # within February; both bases hold D and E: 2 customers, 100 + 100 = 200; month 0: 1 of 2 active, D's
    # 100 / 200 = 0.5 for logos and revenue alike (E capped at min(0, 100) = 0: gross 0.5 too)
    assert rows[("2025-02-01", 0)] == ("2", "1", "0.5", "200", "100", "0.5", "0.5")
    # April: D downgraded to 50: 50 / 200 = 0.25
    assert rows[("2025-02-01", 2)] == ("2", "1", "0.5", "200", "50", "0.25", "0.25")
    # a triangle: the January cohort has months 0..13 up to February 2026
    assert max(k[1] for k in rows if k[0] == "2025-01-01") == 13


def test_trial_conversion(warehouse):
    rows = query(
        warehouse,
        "select trials_started, converted_within_30_days, converted_ever, "
        "conversion_rate_30_days, conversion_rate_ever, median_days_to_convert "
        "from marts.trial_conversion where trial_month = '2025-03-01'",
    )
    # F converted after 14 days, H after 45, G lapsed: median of 14 and 45 = 29.5
    assert tuple(n(v) for v in rows[0]) == ("3", "1", "2", "0.3333", "0.6667", "29.5")


def test_customer_lifetime(warehouse):
    rows = {
        r[0]: tuple(n(v) if not isinstance(v, str) else v for v in r[1:])
        for r in query(
            warehouse,
            "select customer_id, first_paid_date::text, coalesce(churn_date::text, '-'), "
            "tenure_months, current_mrr, lifetime_revenue, plan, acquisition_channel "
            "from marts.customer_lifetime",
        )
    }
    # B: Jan 10, Feb 10, Mar 10 invoices of 200 = 600, less the 50 credit note; 69 days = 2.3 months
    assert rows["cus_B"] == ("2025-01-10", "2025-03-20", "2.3", "0", "550", "Team", "paid_search")
    # A: 14 monthly invoices (2025-01-05 .. 2026-02-05) of 100, tax excluded; 406 days = 13.3 months
    assert rows["cus_A"] == ("2025-01-05", "-", "13.3", "100", "1400", "Team", "organic")
    assert "cus_G" not in rows


def test_revenue_concentration(warehouse):
    rows = query(
        warehouse,
        "select mrr_rank, customer_id, share_of_mrr, cumulative_share_of_mrr, "
        "is_concentration_risk from marts.revenue_concentration order by mrr_rank",
    )
    # today: C 300 of 650 = 0.461538 (a risk); then A, F, H 100 each (0.153846); D 50
    assert [r[1] for r in rows] == ["cus_C", "cus_A", "cus_F", "cus_H", "cus_D"]
    assert (n(rows[0][2]), rows[0][4]) == ("0.461538", True)
    assert (n(rows[1][2]), n(rows[1][3]), rows[1][4]) == ("0.153846", "0.615385", False)
    assert n(rows[-1][3]) == "1"
