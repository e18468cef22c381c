"""Renewals, segments, CAC per channel and efficiency (METRICS.md), on one small account worked out by hand.

The account (USD, "today" frozen at 2026-02-15). Products: Team (monthly $100, yearly $1,200, quarterly
$300) and Business (yearly $2,400):
  A  Team yearly $1,200 (100 MRR) from 2024-03-10, renews 2025-03-10 flat       organic      fintech, 11-50
  B  Team yearly from 2024-04-05; at the 2025-04-05 renewal moves to Business   paid_search  health
     yearly $2,400 (renewed higher, 100 -> 200)
  C  Business yearly (200 MRR) from 2024-05-20, country DE; cancel at period     paid_search
     end scheduled 2025-01-15: churns at the 2025-05-20 renewal (known non-renewal)
  G  Team yearly from 2024-06-01; the 2025-06-01 renewal is never paid, dunning   partner
     cancels it on 2025-06-22 (churn judged at the renewal: within past_due_grace_days)
  H  Business yearly from 2024-07-01; downgraded to Team yearly at the           referral
     2025-07-01 renewal (renewed lower, 200 -> 100)
  F  Team monthly $100 from 2025-01-05                                           organic      fintech
  I  Team monthly $100 from 2025-01-20                                           paid_search
  D  Team quarterly $300 (100 MRR) from 2025-11-01, renewed 2026-02-01; cancel   referral
     at period end scheduled 2026-02-10: its 2026-05-01 term end is a known non-renewal
  E  Team quarterly from 2025-12-15 (term ends 2026-03-15, 06-15, 09-15, 12-15)   partner

MRR at month ends, by hand:
  2024-03 A100 = 100; 04 +B100 = 200; 05 +C200 = 400; 06 +G100 = 500; 07 +H200 = 700 ... 2024-12 700
  2025-01 +F100 +I100 = 900; 02 900; 03 900 (A renews flat); 04 B +100 = 1,000; 05 C -200 = 800;
  06 G -100 = 700; 07 H -100 = 600 ... 10 600; 11 +D100 = 700; 12 +E100 = 800; 2026-01 800; 02 800.
Finance files: spend 2024-12 paid_search 1,200; 2025-01 paid_search 600, outbound 200; 2025-12 partner 900.
Gross margin 0.8 (2025-01), 0.75 (2025-12). P&L (revenue, operating expenses, net burn):
  2025-01 1,000 1,500 600; 2025-02 1,000 1,400 500; 2025-03 1,200 1,500 400; 2025-04 2,000 2,500 700.
"""

from __future__ import annotations

import psycopg2
import pytest

from saas_metrics.demo.billing import Account, Item
from saas_metrics.demo.store import Store
from tests.conftest import n, query
from tests.support.clock import ts
from tests.support.pipeline import dbt_build, scenario_warehouse

NOW = ts("2026-02-15")
T0 = ts("2024-01-01")
DAY = 86400


def build(store: Store) -> None:
    a = Account(store, NOW, id_prefix="G")
    team = a.product("Team", T0, id="prod_g_team")
    business = a.product("Business", T0, id="prod_g_business")
    monthly = a.price(team, 10000, T0, id="price_g_m100")
    yearly = a.price(team, 120000, T0, interval="year", id="price_g_y1200")
    quarterly = a.price(team, 30000, T0, interval="month", interval_count=3, id="price_g_q300")
    business_yearly = a.price(business, 240000, T0, interval="year", id="price_g_y2400")

    def customer(name, when, channel, country="US", **metadata):
        return a.customer(when, id=f"cus_{name}", country=country, metadata={"channel": channel, **metadata})

    start = ts("2024-03-10")
    a.subscribe(
        customer("A", start, "organic", industry="fintech", company_size="11-50"), [Item(yearly)], start
    ).finish()
    b = a.subscribe(customer("B", ts("2024-04-05"), "paid_search", industry="health"), [Item(yearly)], ts("2024-04-05"))
    b.change_at_renewal(ts("2025-03-01"), [Item(business_yearly, id=b.items[0].id)])
    b.finish()
    c = a.subscribe(customer("C", ts("2024-05-20"), "paid_search", "DE"), [Item(business_yearly)], ts("2024-05-20"))
    c.cancel(ts("2025-01-15"), at_period_end=True)
    c.finish()
    g = a.subscribe(customer("G", ts("2024-06-01"), "partner"), [Item(yearly)], ts("2024-06-01"))
    g.advance_to(ts("2025-05-01"))
    g.fail_next_payment()
    g.advance_to(ts("2025-06-02"))
    g.cancel(ts("2025-06-22"))
    g.finish()
    h = a.subscribe(customer("H", ts("2024-07-01"), "referral"), [Item(business_yearly)], ts("2024-07-01"))
    h.change_at_renewal(ts("2025-06-01"), [Item(yearly, id=h.items[0].id)])
    h.finish()
    a.subscribe(
        customer("F", ts("2025-01-05"), "organic", industry="fintech"), [Item(monthly)], ts("2025-01-05")
    ).finish()
    a.subscribe(customer("I", ts("2025-01-20"), "paid_search"), [Item(monthly)], ts("2025-01-20")).finish()
    d = a.subscribe(customer("D", ts("2025-11-01"), "referral"), [Item(quarterly)], ts("2025-11-01"))
    d.cancel(ts("2026-02-10"), at_period_end=True)
    d.finish()
    a.subscribe(customer("E", ts("2025-12-15"), "partner"), [Item(quarterly)], ts("2025-12-15")).finish()
    a.flush()


@pytest.fixture(scope="module")
def warehouse(fresh_database, tmp_path_factory, pg):
    files = {
        "spend_csv": "month,channel,amount,currency\n2024-12,paid_search,1200,usd\n2025-01,paid_search,600,usd\n"
        "2025-01,outbound,200,usd\n2025-12,partner,900,usd\n",
        "gross_margin_csv": "month,gross_margin\n2025-01,0.8\n2025-12,0.75\n",
        "pnl_csv": "month,revenue,operating_expenses,net_burn,currency\n2025-01,1000,1500,600,usd\n"
        "2025-02,1000,1400,500,usd\n2025-03,1200,1500,400,usd\n2025-04,2000,2500,700,usd\n",
    }
    url, _ = scenario_warehouse("growth", build, NOW, fresh_database, tmp_path_factory, finance_files=files)
    return url


def rows(url: str, sql: str, params=()) -> list[tuple]:
    return [tuple(v if isinstance(v, str | bool) else n(v) for v in r) for r in query(url, sql, params)]


def test_waterfall_is_as_worked_out(warehouse):
    ending = dict(rows(warehouse, "select month::text, ending_mrr from marts.mrr_monthly"))
    assert [ending[m] for m in ("2024-07-01", "2025-01-01", "2025-04-01", "2025-05-01", "2025-07-01")] == [
        "700",
        "900",
        "1000",
        "800",
        "600",
    ]
    assert ending["2026-02-01"] == "800"


RENEWAL_COLUMNS = (
    "renewals_due, mrr_up_for_renewal, known_non_renewals, known_non_renewal_mrr, renewals_decided, renewed, "
    "renewed_higher, renewed_lower, churned, renewed_mrr, churned_mrr, logo_renewal_rate, revenue_renewal_rate"
)


def renewal(url: str, period_type: str, start: str) -> tuple:
    return rows(
        url,
        f"select {RENEWAL_COLUMNS} from marts.renewals where period_type = %s and period_start = %s",
        (period_type, start),
    )[0]


def test_renewal_outcomes_by_month(warehouse):
    #            due  up   known  decided renewed higher lower churned renewed_mrr churned_mrr logo rev
    # A renews flat: 100 -> 100
    assert renewal(warehouse, "month", "2025-03-01") == (
        "1",
        "100",
        "0",
        "0",
        "1",
        "1",
        "0",
        "0",
        "0",
        "100",
        "0",
        "1",
        "1",
    )
    # B renews higher: 100 -> 200, revenue renewal 200 / 100
    assert renewal(warehouse, "month", "2025-04-01") == (
        "1",
        "100",
        "0",
        "0",
        "1",
        "1",
        "1",
        "0",
        "0",
        "200",
        "0",
        "1",
        "2",
    )
    # C: cancellation scheduled in January, before the May term end: a known non-renewal, churned
    assert renewal(warehouse, "month", "2025-05-01") == (
        "1",
        "200",
        "1",
        "200",
        "1",
        "0",
        "0",
        "0",
        "1",
        "0",
        "200",
        "0",
        "0",
    )
    # G: the renewal invoice stays open and dunning cancels 21 days later: churned at the renewal
    assert renewal(warehouse, "month", "2025-06-01") == (
        "1",
        "100",
        "0",
        "0",
        "1",
        "0",
        "0",
        "0",
        "1",
        "0",
        "100",
        "0",
        "0",
    )
    # H renews lower: 200 -> 100
    assert renewal(warehouse, "month", "2025-07-01") == (
        "1",
        "200",
        "0",
        "0",
        "1",
        "1",
        "0",
        "1",
        "0",
        "100",
        "0",
        "1",
        "0.5",
    )
    # monthly subscriptions (F, I) never appear: nothing due in August 2025, and the months start with
    # the first term end (March 2025)
    first = query(warehouse, "select min(period_start)::text from marts.renewals where period_type = 'month'")
    assert first == [("2025-03-01",)]
    assert renewal(warehouse, "month", "2025-08-01") == (
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "0",
        "null",
        "null",
    )


def test_renewal_outcomes_by_quarter(warehouse):
    # Q2 2025: B (higher), C (churned, known), G (churned): up 100 + 200 + 100 = 400; renewed 1 of 3,
    # renewed MRR 200 / 400 = 0.5; churned 200 + 100
    assert renewal(warehouse, "quarter", "2025-04-01") == (
        "3",
        "400",
        "1",
        "200",
        "3",
        "1",
        "1",
        "0",
        "2",
        "200",
        "300",
        "0.3333",
        "0.5",
    )


def test_renewal_calendar_of_the_next_twelve_months(warehouse):
    calendar = {
        r[0]: r[1:]
        for r in rows(
            warehouse,
            "select period_start::text, renewals_due, mrr_up_for_renewal, known_non_renewals, renewals_decided "
            "from marts.renewals where period_type = 'month' and period_start >= '2026-02-01' order by 1",
        )
    }
    # February (current): D renewed on 2026-02-01 (decided); nothing else due
    assert calendar["2026-02-01"] == ("1", "100", "0", "1")
    # March: A (2026-03-10) and E (2026-03-15), 100 each, not decided yet
    assert calendar["2026-03-01"] == ("2", "200", "0", "0")
    # April: B at 200; May: D, whose cancellation is scheduled (known non-renewal); June: E; July: H (100)
    assert calendar["2026-04-01"] == ("1", "200", "0", "0")
    assert calendar["2026-05-01"] == ("1", "100", "1", "0")
    assert calendar["2026-06-01"] == ("1", "100", "0", "0")
    assert calendar["2026-07-01"] == ("1", "100", "0", "0")
    # August: nothing - D ends in May, so its next quarter is not due; September and December: E
    assert calendar["2026-08-01"] == ("0", "0", "0", "0")
    assert calendar["2026-09-01"] == ("1", "100", "0", "0")
    assert calendar["2026-12-01"] == ("1", "100", "0", "0")
    # twelve months ahead of February 2026, and no further (E's 2027-03-15 is not listed)
    assert max(calendar) == "2027-02-01"
    assert calendar["2027-02-01"] == ("0", "0", "0", "0")


def segment(url: str, month: str, dimension: str) -> dict:
    return {
        r[0]: r[1:]
        for r in rows(
            url,
            "select segment, mrr, customers, starting_mrr, starting_customers, churned_mrr, churned_customers, "
            "logo_churn_rate, revenue_churn_rate from marts.mrr_by_segment where month = %s and dimension = %s",
            (month, dimension),
        )
    }


def test_mrr_by_billing_interval_and_plan(warehouse):
    # June 2025 (total 700): yearly A 100, B 200, H 200; G churned (it keeps the previous month's interval):
    # starting 100 + 200 + 100 + 200 = 600 over 4 customers; logo churn 1 / 4; revenue churn 100 / 600
    by_interval = segment(warehouse, "2025-06-01", "billing_interval")
    assert by_interval["year"] == ("500", "3", "600", "4", "100", "1", "0.25", "0.166667")
    assert by_interval["month"] == ("200", "2", "200", "2", "0", "0", "0", "0")
    assert set(by_interval) == {"year", "month"}
    # by plan: Team A 100, F 100, I 100 and churned G; Business B 200 (since its April renewal), H 200
    by_plan = segment(warehouse, "2025-06-01", "plan")
    assert by_plan["Team"][:2] == ("300", "3") and by_plan["Team"][4:6] == ("100", "1")
    assert by_plan["Business"][:2] == ("400", "2")
    # a quarterly plan is its own interval: D and E in January 2026
    assert segment(warehouse, "2026-01-01", "billing_interval")["3 months"][:2] == ("200", "2")


def test_mrr_by_metadata_attribute_and_none(warehouse):
    # industry in June 2025: fintech A + F = 200; health B = 200; missing (H 200, I 100, churned G) = (none)
    by_industry = segment(warehouse, "2025-06-01", "metadata.industry")
    assert {k: v[:2] for k, v in by_industry.items()} == {
        "fintech": ("200", "2"),
        "health": ("200", "1"),
        "(none)": ("300", "2"),
    }
    assert by_industry["(none)"][4:6] == ("100", "1")
    assert segment(warehouse, "2025-06-01", "metadata.company_size")["11-50"][:2] == ("100", "1")
    # C (country DE) churned in May 2025: its segment holds the churn, with no MRR left
    assert segment(warehouse, "2025-05-01", "country")["DE"][:2] == ("0", "0")
    assert segment(warehouse, "2025-05-01", "country")["DE"][4:6] == ("200", "1")


def test_segments_add_up_to_the_month_in_every_dimension(warehouse):
    gaps = query(
        warehouse,
        "select s.month, s.dimension from marts.mrr_by_segment s join marts.mrr_monthly m using (month) "
        "group by s.month, s.dimension, m.ending_mrr, m.churned_mrr "
        "having sum(s.mrr) <> m.ending_mrr or sum(s.churned_mrr) <> m.churned_mrr",
    )
    assert gaps == []
    dimensions = {r[0] for r in query(warehouse, "select distinct dimension from marts.mrr_by_segment")}
    assert dimensions == {
        "plan",
        "billing_interval",
        "country",
        "acquisition_channel",
        "mrr_band",
        "billing_account",
        "metadata.industry",
        "metadata.company_size",
    }


def test_cohort_retention_by_segment_keeps_the_cohort_months_segment(warehouse):
    def cohort(cohort_month, dimension, offset):
        return {
            r[0]: r[1:]
            for r in rows(
                warehouse,
                "select segment, cohort_customers, active_customers, logo_retention, cohort_starting_mrr, mrr, "
                "revenue_retention, gross_revenue_retention from marts.cohort_retention_by_segment "
                "where cohort_month = %s and dimension = %s and months_since_start = %s",
                (cohort_month, dimension, offset),
            )
        }

    # B started on Team yearly (100); 12 months later it pays 200 on Business, but stays in its Team row
    assert cohort("2024-04-01", "plan", 12) == {"Team": ("1", "1", "1", "100", "200", "2", "1")}
    # C's cohort (May 2024, Business): gone 12 months later
    assert cohort("2024-05-01", "plan", 12) == {"Business": ("1", "0", "0", "200", "0", "0", "0")}
    # January 2025 cohort by channel: F organic, I paid_search, both still paying a year later
    assert cohort("2025-01-01", "acquisition_channel", 12) == {
        "organic": ("1", "1", "1", "100", "100", "1", "1"),
        "paid_search": ("1", "1", "1", "100", "100", "1", "1"),
    }


def channels(url: str, month: str) -> dict:
    return {
        r[0]: r[1:]
        for r in rows(
            url,
            "select channel, is_paid_channel, new_customers, new_mrr, spend, cac, cac_payback_months, "
            "blended_cac, paid_cac from marts.cac_by_channel where month = %s",
            (month,),
        )
    }


def test_cac_per_channel_blended_and_paid(warehouse):
    january = channels(warehouse, "2025-01-01")
    # organic F: no spend row in a month the file covers -> spend 0, CAC 0 (a row, not a missing one)
    assert january["organic"][:6] == (False, "1", "100", "0", "0", "0")
    # paid_search I: 600 / 1; payback 600 / (100 x 0.8) = 7.5
    assert january["paid_search"][:6] == (True, "1", "100", "600", "600", "7.5")
    # outbound: 200 spent, nobody acquired: CAC null
    assert january["outbound"][:5] == (True, "0", "0", "200", "null")
    # blended: (600 + 200) / 2 new customers = 400; paid: 800 / 1 (I; outbound had none) = 800
    assert {v[6:] for v in january.values()} == {("400", "800")}
    # blended CAC is saas_kpis_monthly's CAC
    assert query(warehouse, "select cac from marts.saas_kpis_monthly where month = '2025-01-01'")[0][0] == 400
    # December: E via partner, 900 / 1; payback 900 / (100 x 0.75) = 12
    assert channels(warehouse, "2025-12-01")["partner"][:6] == (True, "1", "100", "900", "900", "12")
    # a month the spend file does not cover: spend unknown, not zero
    assert channels(warehouse, "2024-03-01")["organic"][:5] == ("null", "1", "100", "null", "null")
    # spend without new customers (December 2024) still has its row
    assert channels(warehouse, "2024-12-01")["paid_search"][1:5] == ("0", "0", "1200", "null")


def efficiency(url: str, period_type: str, start: str) -> tuple:
    return rows(
        url,
        "select net_new_arr, arr_growth_rate, revenue, operating_expenses, net_burn, profit_margin, rule_of_40, "
        "burn_multiple, previous_quarter_sales_marketing_spend, magic_number from marts.saas_efficiency "
        "where period_type = %s and period_start = %s",
        (period_type, start),
    )[0]


def test_efficiency_per_month(warehouse):
    # January 2025: F + I = 200 MRR new = 2,400 net new ARR; burn 600 / 2,400 = 0.25;
    # margin (1,000 - 1,500) / 1,000 = -0.5; no ARR a year before (nothing paid in January 2024): growth null
    assert efficiency(warehouse, "month", "2025-01-01") == (
        "2400",
        "null",
        "1000",
        "1500",
        "600",
        "-0.5",
        "null",
        "0.25",
        "null",
        "null",
    )
    # February: nothing moved, burn multiple undefined
    assert efficiency(warehouse, "month", "2025-02-01")[7] == "null"
    # April: B +100 -> 1,200 net new ARR; ARR 12,000 vs April 2024 2,400: growth 4; margin -500 / 2,000 = -0.25;
    # rule of 40 = 4 - 0.25 = 3.75; burn 700 / 1,200 = 0.5833
    assert efficiency(warehouse, "month", "2025-04-01")[:8] == (
        "1200",
        "4",
        "2000",
        "2500",
        "700",
        "-0.25",
        "3.75",
        "0.5833",
    )
    # a month without a P&L row: those columns are null, the rest is there (G churned: -1,200;
    # ARR 8,400 vs June 2024 6,000: growth 0.4)
    assert efficiency(warehouse, "month", "2025-06-01")[:7] == ("-1200", "0.4", "null", "null", "null", "null", "null")


def test_efficiency_per_quarter(warehouse):
    # Q1 2025: net new ARR 2,400 (January); ARR at March's end 10,800 vs March 2024 1,200: growth 8;
    # margin (3,200 - 4,400) / 3,200 = -0.375; rule of 40 7.625; burn (600 + 500 + 400) / 2,400 = 0.625;
    # magic number 2,400 / Q4 2024 spend 1,200 = 2
    assert efficiency(warehouse, "quarter", "2025-01-01") == (
        "2400",
        "8",
        "3200",
        "4400",
        "1500",
        "-0.375",
        "7.625",
        "0.625",
        "1200",
        "2",
    )
    # Q2 2025: only April in the P&L file - a quarter's P&L needs all three months
    assert efficiency(warehouse, "quarter", "2025-04-01")[2:5] == ("null", "null", "null")


def test_segments_rebuild_only_changed_customers_and_equal_a_rebuild(warehouse, tmp_path):
    """Last in this file: it changes the warehouse. I's industry is edited in Stripe (a re-loaded
    customer): the nightly build recomputes I alone, and every growth table equals a rebuild."""
    with psycopg2.connect(warehouse) as conn, conn.cursor() as cur:
        cur.execute(
            "update raw_stripe.customers set data = jsonb_set(data, '{metadata,industry}', '\"retail\"'), "
            "synced_at = now() where id = 'cus_I'"
        )
    columns = "customer_id, month, plan, billing_interval, mrr_band, segment_metadata, starting_mrr, mrr"
    before = dict(
        ((r[0], r[1]), r) for r in query(warehouse, f"select {columns} from intermediate.int_customer_segments_monthly")
    )
    dbt_build(warehouse, tmp_path, NOW)
    after = {
        (r[0], r[1]): r for r in query(warehouse, f"select {columns} from intermediate.int_customer_segments_monthly")
    }
    changed = {key[0] for key in after if after[key] != before.get(key)}
    assert changed == {"cus_I"} and set(after) == set(before)
    assert segment(warehouse, "2025-06-01", "metadata.industry")["retail"][:2] == ("100", "1")
    tables = [
        "intermediate.int_customer_segments_monthly",
        "marts.mrr_by_segment",
        "marts.cohort_retention_by_segment",
        "marts.renewals",
    ]

    def rows_of(table):
        found = query(warehouse, f"select * from {table}")
        if table.startswith("intermediate"):  # without the stamps of when the rows were computed
            found = [r[:-2] for r in found]
        return sorted(found, key=repr)

    incremental = {table: rows_of(table) for table in tables}
    dbt_build(warehouse, tmp_path, NOW, select="int_customer_segments_monthly+ renewals", full_refresh=True)
    for table in tables:
        assert incremental[table] == rows_of(table), table


def test_month_aggregates_recompute_listed_months_and_equal_a_rebuild(warehouse, tmp_path):
    """METRICS.md "Incremental builds": the segment aggregates recompute only the months the ledger of
    int_customer_segments_monthly lists. "Today" moves from 2026-02-15 into March (a month ends: every paying
    customer gets a March row, which the engine writes without listing anyone), then one more day; only
    those months may be listed, and the marts equal a rebuild."""
    ledger = "intermediate.int_customer_segments_monthly__changed_months"
    tables = ["marts.mrr_by_segment", "marts.cohort_retention_by_segment"]

    def rows_of(table):
        return sorted(query(warehouse, f"select * from {table}"), key=repr)

    for day in ("2026-03-07", "2026-03-08"):
        (before,) = query(warehouse, f"select max(changed_at) from {ledger}")[0]
        dbt_build(warehouse, tmp_path, ts(day))
        listed = {str(r[0]) for r in query(warehouse, f"select month from {ledger} where changed_at > %s", (before,))}
        # into March: February's last days (its month-end values) and March; then March alone
        assert listed <= ({"2026-02-01", "2026-03-01"} if day == "2026-03-07" else {"2026-03-01"}), listed
        incremental = {table: rows_of(table) for table in tables}
        # March's rows exist for every dimension (a new month on the first build of the month)
        march = query(
            warehouse, "select count(distinct dimension) from marts.mrr_by_segment where month = '2026-03-01'"
        )
        assert march == [(8,)]
        dbt_build(warehouse, tmp_path, ts(day), select="int_customer_segments_monthly+", full_refresh=True)
        for table in tables:
            assert incremental[table] == rows_of(table), (day, table)
