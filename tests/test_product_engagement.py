"""Product engagement (METRICS.md "Product engagement"), on one small account worked out by hand.

"Today" is Wednesday 2026-03-04; weeks start on Monday. The last complete week is Feb 23.

Stripe customers and their product accounts:
  A  cus_PA, metadata tenant_id=acct_a; Pro 4 seats x $15 = $60/month since 2025-12-01
  B  cus_PB, no metadata, mapped by the mapping file to acct_b; $29/month since 2025-11-01
  C  cus_PC, whose account id *is* cus_PC; signs up 2026-01-20 with a 14-day trial, pays $100
     from Feb 3, cancels at once Feb 20
  E  cus_PE, tenant_id=acct_e; signs up 2026-02-02 with a 14-day trial, cancels Feb 15 (lapsed)
  F  cus_PF, tenant_id=acct_f; $50/month since 2025-12-10, default card expiring 03/2026, no events
  acct_orphan: events but no customer (kept, counted, never dropped)

Events:
  acct_a, every Tuesday of the 7 weeks Jan 5 .. Feb 16: 10 events by 3 users, 5 features
      a1 (role admin): login, report_created, comment_added, alert_configured
      a2: login, dashboard_viewed, comment_added; a3: login, export_downloaded, comment_added
    Tue Feb 24: a1 login, report_created; a2 login, dashboard_viewed (4 events, 2 users, 2 features)
    Tue Mar 3: a1 login
  acct_b, Tue Jan 13: b1 (no role) login, report_created, dashboard_viewed, export_downloaded, comment_added
  cus_PC: c1 invite_sent Jan 21, integration_connected Jan 25 (activated within 7 days)
  acct_e: e1 login Feb 3
  acct_orphan: o1 login + dashboard_viewed Feb 24, o2 login Feb 25

By hand, acct_a in week Feb 23 (health = activity 0-50 + breadth 0-25 + seats 0-25):
  expected = average of the 7 weeks before = 10; activity = 50 x 4/10 = 20
  breadth = 25 x 2/5 = 10; seats = max(4 bought, 3 most active) = 4; seat = 25 x 2/4 = 12.5
  health = 42.5 -> 43 needs_attention; each earlier week: 50 + 25 + 25 x 3/4 = 93.75 -> 94
acct_b in week Feb 23: 0 events vs 5/6 expected -> 0 + 0 + 0 = 0 at_risk (week Jan 12: 50 + 20 + 25 = 95)
"""

from __future__ import annotations

import gzip
import json
import shutil
from decimal import Decimal
from pathlib import Path

import dlt
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingestion.product import TABLES, ProductEventsError, product_source
from ingestion.raw_tables import ensure_tables
from saas_metrics.demo.billing import Account, Item
from saas_metrics.demo.store import Store
from tests.conftest import query
from tests.support.clock import ts
from tests.support.pipeline import dbt_build, scenario_warehouse

NOW = ts("2026-03-04")
T0 = ts("2025-10-01")
FEATURE_WEEKS = ["2026-01-06", "2026-01-13", "2026-01-20", "2026-01-27", "2026-02-03", "2026-02-10", "2026-02-17"]


def build_stripe(store: Store) -> None:
    a = Account(store, NOW, id_prefix="P")
    product = a.product("Team", T0, id="prod_team")
    seat = a.price(product, 1500, T0, id="price_seat")
    m29 = a.price(product, 2900, T0, id="price_29")
    m50 = a.price(product, 5000, T0, id="price_50")
    m100 = a.price(product, 10000, T0, id="price_100")
    ca = a.customer(ts("2025-12-01"), id="cus_PA", metadata={"tenant_id": "acct_a"})
    a.subscribe(ca, [Item(seat, 4)], ts("2025-12-01")).finish()
    cb = a.customer(ts("2025-11-01"), id="cus_PB")
    a.subscribe(cb, [Item(m29)], ts("2025-11-01")).finish()
    cc = a.customer(ts("2026-01-20"), id="cus_PC")
    c = a.subscribe(cc, [Item(m100)], ts("2026-01-20"), trial_days=14)
    c.cancel(ts("2026-02-20"))
    c.finish()
    ce = a.customer(ts("2026-02-02"), id="cus_PE", metadata={"tenant_id": "acct_e"})
    e = a.subscribe(ce, [Item(m100)], ts("2026-02-02"), trial_days=14)
    e.cancel(ts("2026-02-15"))
    e.finish()
    cf = a.customer(ts("2025-12-10"), id="cus_PF", metadata={"tenant_id": "acct_f"}, card_expires=(3, 2026))
    a.subscribe(cf, [Item(m50)], ts("2025-12-10")).finish()
    a.flush()


def event(event_id, account, user, name, when, **props) -> dict:
    return {
        "event_id": event_id,
        "account_id": account,
        "user_id": user,
        "event_name": name,
        "properties": props or None,
        "timestamp": when,
    }


def scenario_events() -> list[dict]:
    rows = []
    for week, day in enumerate(FEATURE_WEEKS):
        at = f"{day}T10:00:00Z"
        for i, (user, name, props) in enumerate(
            [
                ("a1", "login", {"role": "admin"}),
                ("a1", "report_created", {}),
                ("a1", "comment_added", {}),
                ("a1", "alert_configured", {}),
                ("a2", "login", {"role": "member"}),
                ("a2", "dashboard_viewed", {}),
                ("a2", "comment_added", {}),
                ("a3", "login", {"role": "member"}),
                ("a3", "export_downloaded", {}),
                ("a3", "comment_added", {}),
            ]
        ):
            rows.append(event(f"a-{week}-{i}", "acct_a", user, name, at, **props))
    rows += [
        event("a-8-0", "acct_a", "a1", "login", "2026-02-24T10:00:00Z", role="admin"),
        event("a-8-1", "acct_a", "a1", "report_created", "2026-02-24T10:05:00Z"),
        event("a-8-2", "acct_a", "a2", "login", "2026-02-24T11:00:00Z", role="member"),
        event("a-8-3", "acct_a", "a2", "dashboard_viewed", "2026-02-24T11:05:00Z"),
        event("a-9-0", "acct_a", "a1", "login", "2026-03-03T09:00:00Z", role="admin"),
    ]
    for i, name in enumerate(["login", "report_created", "dashboard_viewed", "export_downloaded", "comment_added"]):
        rows.append(event(f"b-{i}", "acct_b", "b1", name, "2026-01-13T10:00:00Z"))
    rows += [
        event("c-0", "cus_PC", "c1", "invite_sent", "2026-01-21T10:00:00Z"),
        event("c-1", "cus_PC", "c1", "integration_connected", "2026-01-25T10:00:00Z"),
        event("e-0", "acct_e", "e1", "login", "2026-02-03T10:00:00Z"),
        event("o-0", "acct_orphan", "o1", "login", "2026-02-24T10:00:00Z"),
        event("o-1", "acct_orphan", "o1", "dashboard_viewed", "2026-02-24T10:01:00Z"),
        event("o-2", "acct_orphan", "o2", "login", "2026-02-25T10:00:00Z"),
    ]
    return rows


def write_ndjson(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def load_product(url: str, work: Path, **kwargs):
    pipeline = dlt.pipeline(
        "product_test",
        destination=dlt.destinations.postgres(url),
        dataset_name="raw_product",
        pipelines_dir=str(work / "dlt"),
    )
    info = pipeline.run(product_source(**kwargs))
    ensure_tables(url, TABLES)
    return info


@pytest.fixture(scope="module")
def scenario(fresh_database, tmp_path_factory, pg):
    def product_events(url: str, work: Path) -> None:
        events_dir = work / "events"
        events_dir.mkdir()
        rows = scenario_events()
        write_ndjson(events_dir / "january.ndjson", [r for r in rows if r["timestamp"] < "2026-02"])
        # the same events in two formats: February as Parquet (properties as JSON text), March gzipped
        february = [r for r in rows if "2026-02" <= r["timestamp"] < "2026-03"]
        pq.write_table(
            pa.Table.from_pylist([{**r, "properties": json.dumps(r["properties"])} for r in february]),
            events_dir / "february.parquet",
        )
        with gzip.open(events_dir / "march.ndjson.gz", "wt") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in rows if r["timestamp"] >= "2026-03")
        (work / "mapping.csv").write_text("account_id,customer_id\nacct_b,cus_PB\n")
        load_product(url, work, events_dir=str(events_dir), mapping_csv=str(work / "mapping.csv"))

    url, work = scenario_warehouse("product", build_stripe, NOW, fresh_database, tmp_path_factory, also=product_events)
    return {"url": url, "work": work, "events_dir": work / "events", "mapping": work / "mapping.csv"}


def rows_of(url: str, sql: str, params=None) -> list[dict]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        names = [d.name for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def d(text: str) -> Decimal:
    return Decimal(text)


def test_every_event_is_loaded_once_and_unmapped_accounts_are_kept(scenario):
    url = scenario["url"]
    assert query(url, "select count(*), count(distinct event_id) from raw_product.events") == [(86, 86)]
    accounts = {
        r["account_id"]: (r["customer_id"], r["mapped_by"])
        for r in rows_of(url, "select * from intermediate.int_product_accounts")
    }
    assert accounts == {
        "acct_a": ("cus_PA", "metadata"),
        "acct_b": ("cus_PB", "mapping_table"),
        "cus_PC": ("cus_PC", "customer_id"),
        "acct_e": ("cus_PE", "metadata"),
        "acct_orphan": (None, None),
    }


def test_weekly_engagement_and_health_history(scenario):
    weeks = rows_of(
        scenario["url"],
        "select * from marts.account_engagement_weekly where account_id = 'acct_a' order by week_start",
    )
    assert [str(w["week_start"]) for w in weeks] == [
        "2026-01-05",
        "2026-01-12",
        "2026-01-19",
        "2026-01-26",
        "2026-02-02",
        "2026-02-09",
        "2026-02-16",
        "2026-02-23",
        "2026-03-02",
    ]
    for w in weeks[:7]:
        assert (w["events"], w["active_users"], w["features_used"], w["key_actions"], w["seats"]) == (10, 3, 5, 1, 4)
        assert (w["activity_score"], w["breadth_score"], w["seat_score"]) == (50, 25, d("18.75"))
        assert (w["health_score"], w["health_band"]) == (94, "champion")
    feb23, mar2 = weeks[7], weeks[8]
    assert (feb23["events"], feb23["expected_events"], feb23["active_users"], feb23["features_used"]) == (
        4,
        d("10.00"),
        2,
        2,
    )
    assert (feb23["activity_score"], feb23["breadth_score"], feb23["seat_score"]) == (20, 10, d("12.50"))
    assert (feb23["health_score"], feb23["health_band"], feb23["is_complete_week"]) == (43, "needs_attention", True)
    # the week in progress: 1 event vs (7 x 10 + 4) / 8 = 9.25 expected -> 50/9.25 + 0 + 25 x 1/4 = 11.66
    assert (mar2["is_complete_week"], mar2["expected_events"], mar2["health_score"]) == (False, d("9.25"), 12)

    b = rows_of(
        scenario["url"],
        "select week_start::text, events, health_score from marts.account_engagement_weekly "
        "where account_id = 'acct_b' order by week_start",
    )
    assert [(r["week_start"], r["events"], r["health_score"]) for r in b] == [
        ("2026-01-12", 5, 95),
        ("2026-01-19", 0, 0),
        ("2026-01-26", 0, 0),
        ("2026-02-02", 0, 0),
        ("2026-02-09", 0, 0),
        ("2026-02-16", 0, 0),
        ("2026-02-23", 0, 0),
        ("2026-03-02", 0, 0),
    ]


def test_account_health_is_the_last_complete_week_with_mrr_at_stake(scenario):
    health = {r["account_id"]: r for r in rows_of(scenario["url"], "select * from marts.account_health")}
    a = health["acct_a"]
    assert (str(a["scored_week_start"]), a["health_score"], a["health_band"], a["health_change_4_weeks"]) == (
        "2026-02-23",
        43,
        "needs_attention",
        -51,
    )
    assert (a["is_paying"], a["current_mrr"]) == (True, d("60"))
    b = health["acct_b"]
    assert (b["health_score"], b["health_band"], b["health_change_4_weeks"], b["current_mrr"]) == (
        0,
        "at_risk",
        0,
        d("29"),
    )
    orphan = health["acct_orphan"]
    # week Feb 23: 3 events and no baseline -> 50; 1 feature -> 5; no seats bought, 2 of 2 users active -> 25
    assert (orphan["customer_id"], orphan["health_score"], orphan["current_mrr"], orphan["is_paying"]) == (
        None,
        80,
        d("0"),
        False,
    )


def test_churn_risk_rules(scenario):
    risk = {r["customer_id"]: r for r in rows_of(scenario["url"], "select * from marts.churn_risk")}
    assert set(risk) == {"cus_PA", "cus_PB", "cus_PF"}
    a, b, f = risk["cus_PA"], risk["cus_PB"], risk["cus_PF"]
    assert (a["is_usage_drop"], a["is_no_recent_key_action"], a["is_admin_inactive"], a["is_card_expiring"]) == (
        True,
        False,
        False,
        False,
    )
    assert (a["events_last_week"], a["events_week_before"], a["mrr_at_risk"], a["health_score"]) == (
        4,
        10,
        d("60"),
        43,
    )
    assert a["risk_reasons"] == "usage down 50%+ week over week"
    assert (b["is_usage_drop"], b["is_no_recent_key_action"], b["is_admin_inactive"], b["is_card_expiring"]) == (
        False,
        True,
        True,
        False,
    )
    assert (b["risk_flags"], str(b["admin_last_active_date"]), b["mrr_at_risk"]) == (2, "2026-01-13", d("29"))
    assert (f["is_no_recent_key_action"], f["is_admin_inactive"], f["is_card_expiring"], f["risk_flags"]) == (
        True,
        True,
        True,
        3,
    )
    assert (str(f["default_card_expires_on"]), f["health_score"], f["mrr_at_risk"]) == ("2026-03-31", None, d("50"))


def test_activation_by_signup_month(scenario):
    rows = {str(r["signup_month"]): r for r in rows_of(scenario["url"], "select * from marts.activation")}
    # A (2025-12) and B (2025-11) signed up before events begin (2026-01-06): not judged
    assert set(rows) == {"2026-01-01", "2026-02-01"}
    jan, feb = rows["2026-01-01"], rows["2026-02-01"]
    assert (jan["accounts"], jan["activated_accounts"], jan["activation_rate"]) == (1, 1, d("1"))
    assert (jan["activated_trials"], jan["activated_trials_converted"], jan["activated_trial_conversion_rate"]) == (
        1,
        1,
        d("1"),
    )
    assert (jan["other_trials"], jan["other_trial_conversion_rate"]) == (0, None)
    assert (feb["accounts"], feb["activated_accounts"], feb["activation_rate"]) == (2, 0, d("0"))
    assert (feb["activated_trials"], feb["other_trials"], feb["other_trials_converted"]) == (0, 1, 0)
    assert feb["other_trial_conversion_rate"] == d("0")


def test_feature_adoption(scenario):
    rows = {r["feature"]: r for r in rows_of(scenario["url"], "select * from marts.feature_adoption")}
    assert set(rows) == {
        "report_created",
        "comment_added",
        "alert_configured",
        "dashboard_viewed",
        "export_downloaded",
        "invite_sent",
        "integration_connected",
    }
    # paying accounts with events: acct_a and acct_b; only acct_a used anything since Feb 4
    assert (rows["report_created"]["paying_accounts"], rows["report_created"]["paying_accounts_using"]) == (2, 1)
    assert rows["report_created"]["adoption_rate"] == d("0.5")
    assert (rows["invite_sent"]["paying_accounts_using"], rows["invite_sent"]["adoption_rate"]) == (0, d("0"))
    # C, the only account that started paying after events begin, has no 6 months behind it yet
    assert all(r["users_6_months"] == 0 and r["non_users_6_months"] == 0 for r in rows.values())


def test_late_and_redelivered_events_update_only_what_they_touch(scenario, tmp_path):
    url, work, events_dir = scenario["url"], scenario["work"], scenario["events_dir"]
    before = query(url, "select count(*) from raw_product.events")[0][0]
    # a late event for acct_b in last week, and an acct_a event delivered again in a new file
    write_ndjson(
        events_dir / "late.ndjson",
        [
            event("b-late", "acct_b", "b1", "report_created", "2026-02-25T10:00:00Z"),
            event("a-8-1", "acct_a", "a1", "report_created", "2026-02-24T10:05:00Z"),
        ],
    )
    load_product(url, work, events_dir=str(events_dir), mapping_csv=str(scenario["mapping"]))
    assert query(url, "select count(*) from raw_product.events")[0][0] == before + 1
    dbt_build(url, work, NOW)
    b = rows_of(url, "select * from marts.account_health where account_id = 'acct_b'")[0]
    # 1 event vs 5/6 expected -> 50; 1 feature -> 5; 1 of 1 seat -> 25
    assert (b["events"], b["health_score"], b["health_band"]) == (1, 80, "healthy")
    assert query(url, "select count(*) from marts.churn_risk where customer_id = 'cus_PB'") == [(0,)]
    # the incremental rollups equal a rebuild from scratch
    digest = (
        "select md5(string_agg(t::text, ',' order by t::text)) from "
        "(select account_id, user_id, activity_date, events, key_actions, has_admin_event "
        "from intermediate.int_product_user_days) as t"
    )
    incremental = query(url, digest)
    dbt_build(url, tmp_path, NOW, select="int_product_user_days", full_refresh=True)
    assert query(url, digest) == incremental
    shutil.move(events_dir / "late.ndjson", tmp_path / "late.ndjson")  # leave the fixture as it was


def test_sql_source_reads_incrementally_with_a_late_window(fresh_database, tmp_path):
    app = fresh_database("app")
    warehouse = fresh_database("wh")
    with psycopg2.connect(app) as conn, conn.cursor() as cur:
        cur.execute(
            "create schema app; create table app.activity (id bigint primary key, tenant text, uid text, "
            "name text, props jsonb, created_at timestamptz)"
        )
        cur.execute(
            "insert into app.activity select i, 'acct_' || (i % 3), 'u' || (i % 4), 'login', '{\"n\": 1}', "
            "timestamptz '2026-03-01 00:00+00' + (i || ' hours')::interval from generate_series(1, 20) as i"
        )
    options = {
        "database_url": app,
        "table": "app.activity",
        "columns": "event_id=id,account_id=tenant,user_id=uid,event_name=name,properties=props,occurred_at=created_at",
        "late_window_hours": 24,
    }
    load_product(warehouse, tmp_path, **options)
    assert query(warehouse, "select count(*), min(event_id::int), max(event_id::int) from raw_product.events") == [
        (20, 1, 20)
    ]
    row = rows_of(warehouse, "select * from raw_product.events where event_id = '5'")[0]
    assert (row["account_id"], row["user_id"], row["event_name"], row["properties"]) == (
        "acct_2",
        "u1",
        "login",
        {"n": 1},
    )
    with psycopg2.connect(app) as conn, conn.cursor() as cur:
        # written late: 10 hours before the newest event (inside the window), and 30 hours before (outside)
        cur.execute(
            "insert into app.activity values (100, 'acct_1', 'u1', 'report_created', null, "
            "timestamptz '2026-03-01 10:00+00'), (101, 'acct_1', 'u1', 'too_late', null, "
            "timestamptz '2026-02-28 14:00+00')"
        )
    load_product(warehouse, tmp_path, **options)
    load_product(warehouse, tmp_path, **options)  # a rerun changes nothing
    assert query(warehouse, "select count(*), count(distinct event_id) from raw_product.events") == [(21, 21)]
    assert query(warehouse, "select event_name from raw_product.events where event_id in ('100', '101')") == [
        ("report_created",)
    ]


def test_bad_files_and_settings_fail_with_the_place_named(tmp_path, fresh_database):
    url = fresh_database("badfiles")
    folder = tmp_path / "events"
    folder.mkdir()
    (folder / "ok.ndjson").write_text(json.dumps(event("x1", "a", "u", "login", "2026-03-01T00:00:00Z")) + "\n")
    (folder / "bad.ndjson").write_text('{"event_id": "x2", "account_id": "a", "event_name": "login"}\n')
    with pytest.raises(Exception, match=r"bad\.ndjson line 1: missing occurred_at \(from 'timestamp'\)"):
        load_product(url, tmp_path, events_dir=str(folder))
    (folder / "bad.ndjson").write_text("not json\n")
    with pytest.raises(Exception, match=r"bad\.ndjson line 1: not JSON"):
        load_product(url, tmp_path / "2", events_dir=str(folder))
    with pytest.raises(ProductEventsError, match="unknown column 'when'"):
        product_source(events_dir=str(folder), columns="when=created_at")


def test_signup_funnel(scenario):
    """The journey per signup month (METRICS.md "Customer journey")."""
    funnel = {
        (str(r["signup_month"]), r["step"]): (
            r["signups"],
            r["customers"],
            r["share_of_signups"],
            r["share_of_previous_step"],
            r["median_days_from_previous_step"],
            r["median_days_from_signup"],
        )
        for r in rows_of(scenario["url"], "select * from marts.signup_funnel")
    }
    # January 2026: C signs up and starts its trial on Jan 20, is activated Jan 25 (invite Jan 21, integration
    # Jan 25: the last of the two), first pays Feb 3 (9 days after activation, 14 after signup), churns Feb 20
    # (31 days after signup; never expanded, so no "from previous step")
    jan = {step: v for (month, step), v in funnel.items() if month == "2026-01-01"}
    assert jan["signup"] == (1, 1, d("1"), None, None, d("0"))
    assert jan["trial"] == (1, 1, d("1"), d("1"), d("0"), d("0"))
    assert jan["activated"] == (1, 1, d("1"), d("1"), d("5"), d("5"))
    assert jan["first_paid"] == (1, 1, d("1"), d("1"), d("9"), d("14"))
    assert jan["first_expansion"] == (1, 0, d("0"), d("0"), None, None)
    assert jan["churn"] == (1, 1, d("1"), None, None, d("31"))
    # February: E's trial lapsed unactivated and unpaid
    assert funnel[("2026-02-01", "activated")] == (1, 0, d("0"), d("0"), None, None)
    assert funnel[("2026-02-01", "first_paid")][1] == 0
    # December 2025 (A, F): signed up before product events began - activation unknown, not "0"
    assert funnel[("2025-12-01", "activated")][1:4] == (None, None, None)
    assert funnel[("2025-12-01", "first_paid")] == (2, 2, d("1"), None, None, d("0"))


def test_customer_timeline_lists_one_customers_life_in_order(scenario):
    events = rows_of(
        scenario["url"],
        "select event_order, event_date::text, event_type, mrr_before, mrr_after, plans_added, plans_removed, detail "
        "from marts.customer_timeline where customer_id = 'cus_PC' order by event_order",
    )
    assert [r["event_order"] for r in events] == list(range(1, len(events) + 1))
    assert [(r["event_date"], r["event_type"]) for r in events if r["event_type"] != "health_band_changed"] == [
        ("2026-01-20", "signup"),
        ("2026-01-20", "trial_started"),
        ("2026-01-25", "activated"),
        ("2026-02-03", "new"),
        ("2026-02-20", "cancellation_requested"),
        ("2026-02-20", "subscription_ended"),
        ("2026-02-20", "churn"),
    ]
    new = next(r for r in events if r["event_type"] == "new")
    assert (new["mrr_before"], new["mrr_after"], new["plans_added"], new["plans_removed"]) == (
        d("0"),
        d("100"),
        "Team",
        None,
    )
    churn = next(r for r in events if r["event_type"] == "churn")
    assert (churn["mrr_after"], churn["plans_removed"]) == (d("0"), "Team")
    # week of Jan 19: 2 events, 2 features, 1 user of 1 seat, no baseline -> 50 + 10 + 25 = 85 champion;
    # week of Jan 26: nothing -> 0 at_risk (and it stays there)
    assert [(r["event_date"], r["detail"]) for r in events if r["event_type"] == "health_band_changed"] == [
        ("2026-01-26", "champion -> at_risk")
    ]
