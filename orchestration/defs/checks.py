"""Data-quality asset checks beyond the dbt tests (which dagster-dbt already turns into checks).

- stripe_reconciliation (warns): last complete month's MRR from the engine vs the sum of the
  recurring invoice lines covering the month's end, with every per-customer gap given a cause;
  fails (error) when lines of paying subscriptions name a price no load brought (nothing can value those
  lines: the check names them, and the engine's MRR of their customers, which does not count them);
- raw_stripe_fresh: raw Stripe tables loaded within the last 26 hours (after each load, and hourly
  by freshness_schedule between runs);
- marts_not_older_than_raw: the marts were built after the raw data they read was last loaded;
- volume anomalies: new invoices and events on the last complete day vs their trailing average;
- fx_rates_cover_every_currency (warns): currencies billed without a rate in the fx_rates seed, with
  their customers (their amounts are left out of the reporting-currency totals).
"""

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import dagster as dg
import psycopg2

from orchestration.defs.resources import WarehouseResource
from saas_metrics.config import reporting_currency

MRR_MONTHLY = dg.AssetKey(["marts", "mrr_monthly"])
RAW_MAX_AGE = dt.timedelta(hours=26)

# a gap the causes below do not explain must stay within this share of the month's MRR
RECONCILIATION_TOLERANCE = Decimal("0.005")
# a day's volume outside [LOW, HIGH] x its trailing 28-day average is an anomaly
VOLUME_LOW, VOLUME_HIGH = Decimal("0.5"), Decimal("2.0")
VOLUME_MIN_AVERAGE = 10  # fewer rows a day than this on average: too few to judge

# the comparison and its causes are computed by dbt (models/intermediate/mrr/int_stripe_reconciliation.sql)
RECONCILIATION_SQL = """
select month, customer_id, cause, engine_mrr, invoice_mrr, currency, unpriced_price_ids, unpriced_line_count,
    unpriced_amount_local
from intermediate.int_stripe_reconciliation
order by customer_id
"""

CAUSES = {
    "mid_period_change": "a plan or seat change mid-period: the engine counts the new rate at once "
    "(prorations, invoiced or still pending invoice items), the invoice lines only from the next renewal",
    "ended_before_month_end": "canceled mid-period: the last invoice still covers the month end, the "
    "subscription does not",
    "unpaid_renewal": "the invoice covering the month end was not paid: the engine counts a past-due "
    "subscription until dunning ends it or past_due_grace_days pass, the invoice side counts open invoices "
    "whatever their age and uncollectible ones not at all",
    "unexplained": "no cause found: inspect these customers",
    "unpriced_lines": "cycle lines of a paid or open invoice name a price that no load brought (not listed by "
    "/v1/prices or /v1/plans, not embedded in a subscription item, not retrievable by id; unvalued_lines): "
    "without the price's interval they cannot be turned into MRR, so the invoice side leaves them out (the gap). "
    "The engine does not count them either: its MRR for these customers (unpriced_customers) comes from their "
    "other lines and earlier periods, right if the unknown price bills what the last known one did, short if not",
}


@dataclass(frozen=True)
class Reconciled:
    """One customer's MRR at the end of the last complete month, by the engine and by the invoice lines
    (reporting currency), and the cause of any difference (a key of CAUSES, or 'matched')."""

    customer_id: str
    cause: str
    engine_mrr: Decimal
    invoice_mrr: Decimal
    currency: str | None = None
    # unpriced_lines only: the prices no load brought, the lines naming them and what they bill (local currency)
    unpriced_price_ids: str | None = None
    unpriced_line_count: int = 0
    unpriced_amount_local: Decimal = Decimal(0)

    @property
    def gap(self) -> Decimal:
        return self.engine_mrr - self.invoice_mrr


def reconcile(url: str) -> tuple[dt.date | None, list[Reconciled]]:
    """The last complete month and every customer that has MRR on either side at its end (as the last dbt
    build left int_stripe_reconciliation; none before the first build)."""
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select to_regclass('intermediate.int_stripe_reconciliation')")
        if cur.fetchone()[0] is None:
            return None, []
        cur.execute(RECONCILIATION_SQL)
        rows = cur.fetchall()
    if not rows:
        return None, []
    return rows[0][0], [
        Reconciled(r[1], r[2], r[3] or Decimal(0), r[4] or Decimal(0), r[5], r[6], r[7] or 0, r[8] or Decimal(0))
        for r in rows
    ]


def _unvalued_lines(unpriced: list[Reconciled]) -> str:
    """What the lines of unknown prices are: "2 invoice lines of price_a, price_b, 300.00 usd billed for their
    period" (their amounts by currency, not MRR: their interval is unknown)."""
    lines = sum(c.unpriced_line_count for c in unpriced)
    prices = sorted({p for c in unpriced for p in (c.unpriced_price_ids or "").split(", ") if p})
    billed: dict[str, Decimal] = {}
    for c in unpriced:
        billed[c.currency or "?"] = billed.get(c.currency or "?", Decimal(0)) + c.unpriced_amount_local
    amounts = ", ".join(f"{amount:,.2f} {currency}" for currency, amount in sorted(billed.items()))
    noun = "invoice line" if lines == 1 else "invoice lines"
    return f"{lines} {noun} of {', '.join(prices)}, {amounts} billed for {'its' if lines == 1 else 'their'} period"


@dg.asset_check(
    asset=MRR_MONTHLY,
    name="stripe_reconciliation",
    description="Last complete month: the engine's MRR vs the recurring invoice lines covering the month "
    "end (normalised to a month), every per-customer gap given a cause; warns when the unexplained gap "
    f"exceeds {RECONCILIATION_TOLERANCE:.1%} of MRR.",
)
def stripe_reconciliation(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    return reconciliation_result(warehouse.url())


def reconciliation_result(url: str) -> dg.AssetCheckResult:
    """The stripe_reconciliation check's result for the warehouse at `url`."""
    month, customers = reconcile(url)
    if month is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "no complete month yet"})
    engine = sum((c.engine_mrr for c in customers), Decimal(0))
    invoices = sum((c.invoice_mrr for c in customers), Decimal(0))
    unexplained = [c for c in customers if c.cause == "unexplained"]
    unexplained_gap = sum((c.gap for c in unexplained), Decimal(0))
    metadata: dict = {
        "month": str(month),
        "engine_mrr": float(round(engine, 2)),
        "invoice_lines_mrr": float(round(invoices, 2)),
        "gap": float(round(engine - invoices, 2)),
        "unexplained_gap": float(round(unexplained_gap, 2)),
        "tolerance": f"{RECONCILIATION_TOLERANCE:.1%} of MRR",
        "customers_matched": sum(1 for c in customers if c.cause == "matched"),
    }
    for cause, text in CAUSES.items():
        group = [c for c in customers if c.cause == cause]
        if group:
            gap = sum((c.gap for c in group), Decimal(0))
            metadata[f"gap_{cause}"] = f"{float(round(gap, 2))} over {len(group)} customers: {text}"
    if unexplained:
        metadata["unexplained_customers"] = ", ".join(c.customer_id for c in unexplained[:20]) + (
            f" and {len(unexplained) - 20} more" if len(unexplained) > 20 else ""
        )
    unpriced = [c for c in customers if c.cause == "unpriced_lines"]
    if unpriced:
        # an error, not a warning: lines nothing can value, so nothing here can say whether the engine's MRR of
        # these customers is right
        metadata["unpriced_customers"] = ", ".join(
            f"{c.customer_id} (engine {float(round(c.engine_mrr, 2))})" for c in unpriced[:20]
        ) + (f" and {len(unpriced) - 20} more" if len(unpriced) > 20 else "")
        metadata["unvalued_lines"] = _unvalued_lines(unpriced)
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata)
    passed = abs(unexplained_gap) <= RECONCILIATION_TOLERANCE * max(abs(engine), Decimal(1))
    # a warning, not a block: the engine's own blocking tests guard the marts; a gap here asks for a look
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.WARN, metadata=metadata)


@dg.asset_check(
    asset=MRR_MONTHLY,
    name="marts_not_older_than_raw",
    description="The marts were built after the raw Stripe data they read was last loaded.",
)
def marts_not_older_than_raw(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    instance = context.instance
    mart = instance.get_latest_materialization_event(MRR_MONTHLY)
    raw = instance.get_latest_materialization_event(dg.AssetKey(["stripe", "invoices"]))
    if raw is None:
        return dg.AssetCheckResult(passed=True, metadata={"note": "raw Stripe data not loaded through Dagster yet"})
    if mart is None:
        return dg.AssetCheckResult(passed=False, metadata={"note": "marts never built"})
    lag = raw.timestamp - mart.timestamp
    return dg.AssetCheckResult(
        passed=mart.timestamp >= raw.timestamp,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "marts_built_at": dt.datetime.fromtimestamp(mart.timestamp, dt.UTC).isoformat(),
            "raw_loaded_at": dt.datetime.fromtimestamp(raw.timestamp, dt.UTC).isoformat(),
            "marts_behind_seconds": max(0, round(lag)),
        },
    )


@dg.asset_check(
    asset=dg.AssetKey(["stripe", "invoices"]),
    name="raw_stripe_fresh",
    description=f"The raw Stripe data was loaded within the last {RAW_MAX_AGE.total_seconds() / 3600:.0f} hours "
    "(the newest synced_at of customers, subscriptions and invoices).",
)
def raw_stripe_fresh(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    (synced_at,) = _one_row(
        warehouse,
        "select least((select max(synced_at) from raw_stripe.customers), "
        "(select max(synced_at) from raw_stripe.subscriptions), (select max(synced_at) from raw_stripe.invoices))",
    )
    if synced_at is None:
        return dg.AssetCheckResult(passed=False, metadata={"note": "raw_stripe holds no data"})
    age = dt.datetime.now(dt.UTC) - synced_at
    return dg.AssetCheckResult(
        passed=age <= RAW_MAX_AGE,
        metadata={"last_synced_at": synced_at.isoformat(), "age_hours": round(age.total_seconds() / 3600, 2)},
    )


def _one_row(warehouse: WarehouseResource, sql: str) -> tuple:
    """The one row a check's query returns."""
    with psycopg2.connect(warehouse.url()) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchone()


def _volume_check(table: str):
    @dg.asset_check(
        asset=dg.AssetKey(["stripe", table]),
        name=f"{table}_volume",
        description=f"New {table} created on the last complete day vs their trailing 28-day average "
        f"(outside {VOLUME_LOW}x-{VOLUME_HIGH}x warns).",
    )
    def check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        sql = f"""
            with days as (
                select (created at time zone 'UTC')::date as day, count(*) as n
                from raw_stripe.{table}
                where created >= (select max(created) from raw_stripe.{table}) - interval '30 days'
                group by 1
            ),
            last_day as (select max(day) - 1 as day from days)
            select
                last_day.day,
                coalesce((select n from days where days.day = last_day.day), 0),
                (select coalesce(sum(n), 0) / 28.0 from days
                 where days.day between last_day.day - 28 and last_day.day - 1)
            from last_day
        """
        day, count, average = _one_row(warehouse, sql)
        if day is None:
            return dg.AssetCheckResult(passed=True, metadata={"note": f"no {table} yet"})
        average = Decimal(average)
        metadata = {"day": str(day), "count": count, "trailing_28d_average": float(round(average, 2))}
        if average < VOLUME_MIN_AVERAGE:
            metadata["note"] = f"fewer than {VOLUME_MIN_AVERAGE} a day on average: too few to judge"
            return dg.AssetCheckResult(passed=True, metadata=metadata)
        ratio = Decimal(count) / average
        metadata["ratio"] = float(round(ratio, 3))
        return dg.AssetCheckResult(
            passed=VOLUME_LOW <= ratio <= VOLUME_HIGH, severity=dg.AssetCheckSeverity.WARN, metadata=metadata
        )

    return check


volume_checks = [_volume_check("invoices"), _volume_check("events")]


UNMAPPED_ACCOUNTS_SQL = """
select
    count(*),
    count(*) filter (where customer_id is null),
    coalesce(sum(users_seen) filter (where customer_id is null), 0),
    (
        select coalesce(sum(days.events), 0)
        from intermediate.int_product_user_days as days
        inner join intermediate.int_product_accounts as accounts on days.account_id = accounts.account_id
        where accounts.customer_id is null
    )
from intermediate.int_product_accounts
"""


@dg.asset_check(
    asset=dg.AssetKey(["marts", "account_health"]),
    name="product_accounts_mapped",
    description="Product accounts with no Stripe customer (no metadata, no mapping row): their events are kept "
    "and counted here; warns when any account is unmapped.",
)
def product_accounts_mapped(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    accounts, unmapped, users, events = _one_row(warehouse, UNMAPPED_ACCOUNTS_SQL)
    return dg.AssetCheckResult(
        passed=unmapped == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "accounts": accounts,
            "unmapped_accounts": unmapped,
            "unmapped_users": int(users),
            "unmapped_events": int(events),
        },
    )


# a customer's MRR in the reporting currency is null exactly when its currency has no rate (macros/money.sql)
# (read in marts_build: the build this check follows, which a refresh publishes after its Python marts)
MISSING_RATES_SQL = """
select
    current_mrr.currency,
    count(*) as customers,
    count(*) filter (where current_mrr.is_paying) as paying_customers,
    coalesce(sum(current_mrr.mrr_local) filter (where current_mrr.is_paying), 0) as mrr_local,
    string_agg(current_mrr.customer_id, ', ' order by current_mrr.customer_id) as customer_ids
from marts_build.customer_mrr_current as current_mrr
where current_mrr.mrr is null and current_mrr.mrr_local is not null
group by current_mrr.currency
order by current_mrr.currency
"""
MAX_NAMED_CUSTOMERS = 20


@dg.asset_check(
    asset=MRR_MONTHLY,
    name="fx_rates_cover_every_currency",
    description="Every currency customers are billed in has a rate into the reporting currency in the fx_rates "
    "seed; warns naming each currency without one and its customers, whose amounts are left out of the "
    'reporting-currency totals until the rate is added (METRICS.md "Currencies").',
)
def fx_rates_cover_every_currency(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with psycopg2.connect(warehouse.url()) as conn, conn.cursor() as cur:
        cur.execute(MISSING_RATES_SQL)
        rows = cur.fetchall()
    metadata: dict = {"currencies_without_rate": ", ".join(row[0] for row in rows) or "none"}
    for currency, customers, paying, mrr_local, customer_ids in rows:
        names = customer_ids.split(", ")
        named = ", ".join(names[:MAX_NAMED_CUSTOMERS]) + (
            f" and {len(names) - MAX_NAMED_CUSTOMERS} more" if len(names) > MAX_NAMED_CUSTOMERS else ""
        )
        metadata[f"missing_rate_{currency}"] = (
            f"{customers} customers ({paying} paying, MRR {mrr_local:.2f} {currency.upper()} today) left out of "
            f"the {reporting_currency().upper()} totals: {named}. "
            f"Add {currency} rows to dbt_project/seeds/fx_rates.csv."
        )
    return dg.AssetCheckResult(passed=not rows, severity=dg.AssetCheckSeverity.WARN, metadata=metadata)


asset_checks = [
    stripe_reconciliation,
    fx_rates_cover_every_currency,
    marts_not_older_than_raw,
    raw_stripe_fresh,
    *volume_checks,
    product_accounts_mapped,
]
