"""A deterministic (seeded) history of a SaaS business, billed through `billing.Account`.

About `customers` customers sign up over `months` months, with growth and seasonality, on a
catalogue of monthly, quarterly, annual and weekly prices (per seat, add-ons, a free plan, a
metered API price, EUR/GBP/JPY prices), and live through what real accounts see: trials that
convert or lapse, coupons, upgrades mid-period with prorations, downgrades at renewal, seat
changes, cancellations at period end and immediate ones, failed payments that recover or end
in dunning, paused collection, win-backs, setup fees, tax, credit notes.

Customers are written to the store as they are simulated, so memory stays flat at any scale.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

from saas_metrics.demo.billing import Account, Item, add_interval
from saas_metrics.demo.product_events import ProductEventWriter, customer_events
from saas_metrics.demo.store import Store

log = logging.getLogger("saas_metrics.demo")

DEMO_API_KEY = "sk_test_saas_metrics_demo"
DEMO_EU_API_KEY = "sk_test_saas_metrics_demo_eu"  # the demo's second account (ensure_generated_eu)
DAY = 86400
GENERATOR_VERSION = "7"


@dataclass
class Catalogue:
    plans: dict  # name -> {interval -> price} per currency: plans[currency][name][interval]
    addons: list
    api_usage: dict
    setup_fee: int
    free: dict
    mega_addons: list


def _catalogue(acct: Account, created: int) -> Catalogue:
    products = {
        name: acct.product(name, created, id=f"prod_{name.lower()}")
        for name in ("Starter", "Pro", "Business", "Free", "Storage", "SSO", "API", "Weekly")
    }
    # per currency: (starter, pro per seat, business) monthly unit amounts in minor units
    amounts = {
        "usd": (2900, 1500, 49900),
        "eur": (2700, 1400, 46900),
        "gbp": (2400, 1200, 39900),
        "jpy": (4000, 2000, 70000),
    }
    plans: dict = {}
    for currency, (starter, pro, business) in amounts.items():
        cur = plans.setdefault(currency, {})
        for name, monthly in (("Starter", starter), ("Pro", pro), ("Business", business)):
            product = products[name]
            cur[name] = {
                "month": acct.price(
                    product,
                    monthly,
                    created,
                    currency=currency,
                    id=f"price_{name.lower()}_{currency}_monthly",
                    nickname=f"{name} monthly",
                ),
                "year": acct.price(
                    product,
                    monthly * 10,
                    created,
                    currency=currency,
                    interval="year",
                    id=f"price_{name.lower()}_{currency}_annual",
                    nickname=f"{name} annual",
                ),
            }
        cur["Business"]["quarter"] = acct.price(
            products["Business"],
            business * 3 - business // 4,
            created,
            currency=currency,
            interval="month",
            interval_count=3,
            id=f"price_business_{currency}_quarterly",
            nickname="Business quarterly",
        )
    plans["usd"]["Weekly"] = {
        "week": acct.price(
            products["Weekly"], 900, created, interval="week", id="price_weekly_usd", nickname="Weekly pass"
        )
    }
    addons = [
        acct.price(products["Storage"], 1000, created, id="price_storage_usd", nickname="Extra storage"),
        acct.price(products["SSO"], 5000, created, id="price_sso_usd", nickname="SSO"),
    ]
    mega = [
        acct.price(products["Storage"], 500 + 100 * i, created, id=f"price_pack_{i:02d}_usd", nickname=f"Pack {i}")
        for i in range(1, 13)
    ]
    api = acct.price(
        products["API"],
        1,
        created,
        usage_type="metered",
        id="price_api_usage_usd",
        nickname="API calls (metered)",
    )
    free = acct.price(products["Free"], 0, created, id="price_free_usd", nickname="Free")
    return Catalogue(plans=plans, addons=addons, api_usage=api, setup_fee=25000, free=free, mega_addons=mega)


def _signup_times(rng: random.Random, customers: int, start: int, now: int) -> list[int]:
    """Sign-up times with ~4%/month growth and a yearly season (slow summers, strong Januaries)."""
    span = now - start
    weights = []
    steps = 400
    for i in range(steps):
        t = start + span * (i + 0.5) / steps
        months_in = (t - start) / (30.44 * DAY)
        season = 1 + 0.2 * math.cos(2 * math.pi * ((t / (365.25 * DAY)) % 1))
        weights.append(math.exp(0.04 * months_in) * season)
    total = sum(weights)
    times = []
    for _ in range(customers):
        r = rng.random() * total
        acc = 0.0
        for i, w in enumerate(weights):
            acc += w
            if acc >= r:
                lo = start + span * i / steps
                times.append(int(lo + rng.random() * span / steps))
                break
    return sorted(times)


def _pick_plan(rng: random.Random, cat: Catalogue, currency: str):
    roll = rng.random()
    plans = cat.plans[currency]
    if currency == "usd" and roll < 0.05:
        return "Weekly", plans["Weekly"]["week"], 1
    if roll < 0.45:
        name = "Starter"
    elif roll < 0.85:
        name = "Pro"
    else:
        name = "Business"
    interval = "year" if rng.random() < 0.2 else "month"
    if name == "Business" and rng.random() < 0.2:
        interval = "quarter"
    seats = rng.choice([2, 3, 5, 8, 10, 15]) if name == "Pro" else 1
    return name, plans[name][interval], seats


# the billing currencies of the demo's (US) account's customers, with their weights
DEFAULT_CURRENCIES = {"usd": 85, "eur": 8, "gbp": 6, "jpy": 1}
# the demo's second account (a European entity): its customers are billed in EUR
EU_CURRENCIES = {"eur": 1}
EU_SHARE = 5  # one EU customer for every this many of the US account's

CHANNELS = ["organic", "paid_search", "referral", "outbound", "partner"]
CHANNEL_WEIGHTS = [40, 25, 15, 12, 8]
# what a new customer costs by channel (USD), and the monthly content budget behind organic;
# referral has no spend (a channel without a row in the spend file: zero spend, not a missing row)
CHANNEL_CAC = {"paid_search": 380.0, "outbound": 900.0, "partner": 250.0}
ORGANIC_MONTHLY_BUDGET = 4000.0
# customer attributes kept in Stripe metadata (segment dimensions: var segment_metadata_keys); some
# customers lack them, which the segment marts show as '(none)'
INDUSTRIES = ["software", "fintech", "healthcare", "retail", "education", "media"]
COMPANY_SIZES = ["1-10", "11-50", "51-200", "201-1000", "1000+"]


def _attributes(n: int) -> dict:
    """Industry and company size of customer n, from their own seeded generator (the main one, and so
    the rest of the account, is untouched)."""
    rng = random.Random(f"attributes-{n}")
    attributes = {}
    if rng.random() < 0.9:
        attributes["industry"] = rng.choice(INDUSTRIES)
    if rng.random() < 0.8:
        attributes["company_size"] = rng.choices(COMPANY_SIZES, weights=[35, 30, 20, 10, 5])[0]
    return attributes


def _simulate_customer(
    acct: Account,
    cat: Catalogue,
    rng: random.Random,
    n: int,
    signup: int,
    now: int,
    coupons: list[dict],
    channel: str,
    life: dict | None = None,
    currencies: dict[str, int] | None = None,
    id_prefix: str = "",
) -> None:
    """Bill one customer's whole history. `life` (if given) receives what the product-event
    generator needs: the subscriptions, voluntary cancellation decisions, plan and seats. `currencies`: the
    billing currencies to draw from, with their weights; `id_prefix` goes into the customer and tenant ids."""
    life = life if life is not None else {}
    life.update(subs=[], decisions=[], lapsed_trial=False, free=False)
    weights = currencies or DEFAULT_CURRENCIES
    currency = rng.choices(list(weights), weights=list(weights.values()))[0]
    country = {
        "usd": rng.choice(["US", "US", "US", "CA", "AU"]),
        "eur": rng.choice(["DE", "FR", "NL", "ES"]),
        "gbp": "GB",
        "jpy": "JP",
    }[currency]
    customer = acct.customer(
        signup,
        currency=currency,
        country=country,
        metadata={"tenant_id": f"acct_{id_prefix}{n:06d}", "channel": channel, **_attributes(n)},
        id=f"cus_demo{id_prefix}{n:06d}",
    )
    if currency == "usd" and rng.random() < 0.06:  # free plan forever
        life["free"] = True
        life["subs"].append(acct.subscribe(customer, [Item(cat.free)], signup))
        life["subs"][-1].finish()
        return
    name, price, seats = _pick_plan(rng, cat, currency)
    life.update(plan=name, seats=seats)
    items = [Item(price, seats)]
    if currency == "usd" and name != "Weekly" and price["recurring"]["interval"] == "month":
        if rng.random() < 0.15:
            items.append(Item(rng.choice(cat.addons)))
        if rng.random() < 0.08:
            items.append(Item(cat.api_usage, 1))
        if n % 997 == 5:  # a few customers buy every pack: more than ten items on one subscription
            items.extend(Item(p) for p in cat.mega_addons)
    trial = 14 if rng.random() < 0.35 else 0
    coupon = rng.choice(coupons) if rng.random() < 0.12 and currency == "usd" else None
    tax = 20.0 if currency in ("eur", "gbp") else (8.0 if rng.random() < 0.1 else 0.0)
    risk = {"Starter": 0.03, "Pro": 0.018, "Business": 0.01, "Weekly": 0.06}[name] * rng.uniform(0.5, 1.5)

    if trial and rng.random() < 0.3:  # a trial that lapses
        sub = acct.subscribe(customer, items, signup, trial_days=trial)
        life["subs"].append(sub)
        life["lapsed_trial"] = True
        sub.cancel(signup + trial * DAY - 3600)
        sub.finish()
        return
    if name == "Business" and rng.random() < 0.5:
        acct.one_off_invoice(
            customer,
            signup,
            cat.setup_fee if currency != "jpy" else 35000,
            description="Onboarding and setup",
        )
    sub = acct.subscribe(customer, items, signup, trial_days=trial, coupon=coupon, tax_percent=tax)
    life["subs"].append(sub)
    t = signup + trial * DAY
    while t < now and sub.ended_at is None:
        step_end = t + int(30.44 * DAY)
        r = t + int(rng.random() * (step_end - t))
        if r >= now:
            break
        roll = rng.random()
        if roll < risk:  # churn
            life["decisions"].append(r)
            sub.cancel(r, at_period_end=rng.random() < 0.75)
            sub.finish()
            if rng.random() < 0.2 and sub.ended_at:  # win-back
                back = sub.ended_at + rng.randint(30, 200) * DAY
                if back < now:
                    sub = acct.subscribe(customer, [Item(price, seats)], back, tax_percent=tax)
                    life["subs"].append(sub)
                    t = back
                    continue
            return
        elif roll < risk + 0.03 and sub.pending_fail is False and sub.status == "active":
            renewal = sub.period_end
            if renewal + 25 * DAY < now:
                sub.fail_next_payment()
                outcome = rng.random()
                if outcome < 0.7:
                    # a third of them with a new card (from the day, not a draw: the other draws stay as they were)
                    sub.recover(renewal + rng.randint(1, 6) * DAY, card_update=(renewal // DAY) % 3 == 0)
                elif outcome < 0.92:
                    sub.advance_to(renewal + DAY)
                    sub.cancel(renewal + 21 * DAY, reason="payment_failed")
                    sub.finish()
                    return
                else:
                    sub.mark_unpaid(renewal + 15 * DAY)
                    sub.finish()
                    return
                step_end = max(step_end, renewal + 7 * DAY)
        elif roll < risk + 0.055 and name in ("Starter", "Pro") and sub.period_end > r:
            # upgrade mid-period with prorations
            new_name = "Pro" if name == "Starter" else "Business"
            interval = price["recurring"]["interval"]
            new_price = cat.plans[currency][new_name]["year" if interval == "year" else "month"]
            if new_price["recurring"]["interval"] == price["recurring"]["interval"]:
                new_seats = max(seats, 3) if new_name == "Pro" else 1
                sub.change(r, [Item(new_price, new_seats, id=items[0].id), *items[1:]])
                name, price, seats = new_name, new_price, new_seats
                items = sub.items
        elif roll < risk + 0.075 and name == "Pro":
            new_seats = max(1, seats + rng.choice([-2, -1, 1, 2, 3]))
            if rng.random() < 0.5:
                sub.change(r, [Item(price, new_seats, id=sub.items[0].id), *sub.items[1:]])
            else:
                sub.change_at_renewal(r, [Item(price, new_seats, id=sub.items[0].id), *sub.items[1:]])
            seats = new_seats
        elif roll < risk + 0.082 and name == "Business":
            down = cat.plans[currency]["Pro"][
                price["recurring"]["interval"] if price["recurring"]["interval"] == "year" else "month"
            ]
            if price["recurring"]["interval_count"] == 1:
                sub.change_at_renewal(r, [Item(down, 5)])
                name, price, seats = "Pro", down, 5
        elif roll < risk + 0.085 and sub.pause_collection is None:
            sub.pause(r, behavior="void")
            resume = r + rng.randint(35, 70) * DAY
            if resume < now:
                sub.resume(resume)
                step_end = max(step_end, resume)
        t = step_end
    # credit notes: a goodwill credit on a few paid invoices
    if rng.random() < 0.02:
        invoices = [o for o in sub._out if o.get("object") == "invoice" and o["status"] == "paid" and o["total"] > 0]
        if invoices:
            inv = rng.choice(invoices)
            acct.credit_note(inv, inv["total"] // 2, inv["created"] + 5 * DAY)
    sub.finish()


def write_finance_files(folder: Path, signups: dict[tuple[str, str], int], rng: random.Random) -> None:
    """Spend by month and channel that follows the sign-ups, a gross margin near 80%, and a monthly P&L
    (revenue growing with the customer base, expenses above it: a company burning cash)."""
    folder.mkdir(parents=True, exist_ok=True)
    months = sorted({month for month, _ in signups})
    with (folder / "marketing_spend.csv").open("w") as spend:
        spend.write("month,channel,amount,currency\n")
        for month in months:
            spend.write(f"{month},organic,{ORGANIC_MONTHLY_BUDGET * rng.uniform(0.9, 1.1):.2f},usd\n")
            for channel, cac in CHANNEL_CAC.items():
                count = signups.get((month, channel), 0)
                if count:
                    spend.write(f"{month},{channel},{count * cac * rng.uniform(0.8, 1.25):.2f},usd\n")
    with (folder / "gross_margin.csv").open("w") as margin:
        margin.write("month,gross_margin\n")
        for i, month in enumerate(months):
            margin.write(f"{month},{min(0.86, 0.74 + i * 0.004 + rng.uniform(-0.01, 0.01)):.4f}\n")
    with (folder / "pnl.csv").open("w") as pnl:
        pnl.write("month,revenue,operating_expenses,net_burn,currency\n")
        customers = 0
        for month in months:
            customers += sum(count for (m, _), count in signups.items() if m == month)
            revenue = customers * 0.65 * 110 * rng.uniform(0.95, 1.05)
            expenses = (
                revenue * 0.85
                + 30000
                + ORGANIC_MONTHLY_BUDGET
                + sum(signups.get((month, channel), 0) * cac for channel, cac in CHANNEL_CAC.items())
            )
            burn = (expenses - revenue) * rng.uniform(0.9, 1.1)
            pnl.write(f"{month},{revenue:.2f},{expenses:.2f},{burn:.2f},usd\n")


# The demo's contracts billed outside Stripe (README "Contracts outside Stripe"): enterprise deals
DEMO_CONTRACTS = 20
CONTRACT_PLANS = (("Enterprise", 30.0), ("Enterprise Plus", 45.0))  # plan, list price per seat per month
CONTRACT_COMPANIES = (
    "Northwind Traders",
    "Contoso",
    "Fabrikam",
    "Tailspin Toys",
    "Wide World Importers",
    "Adventure Works",
    "Litware",
    "Proseware",
    "Lucerne Publishing",
    "Margie's Travel",
    "Alpine Ski House",
    "Coho Winery",
    "Fourth Coffee",
    "Graphic Design Institute",
    "Humongous Insurance",
    "Trey Research",
    "Wingtip Toys",
    "Woodgrove Bank",
    "Blue Yonder Airlines",
    "City Power & Light",
)


def write_contracts_file(path: Path, now: int, months: int, seed: int) -> int:
    """About DEMO_CONTRACTS enterprise contracts over the last `months` months, invoiced by hand (METRICS.md
    "Contracts outside Stripe"): annual or quarterly terms of 20 to 120 seats at a negotiated discount,
    some amended mid-term (seats added), some not renewed, three in EUR. Deterministic for (now, months, seed);
    returns how many rows (versions) it wrote."""
    rng = random.Random(seed * 7919 + 25)
    day = 86400
    today = now // day * day
    first = add_interval(today, -months, "month")
    header = (
        "contract_id,customer_id,customer_name,country,plan,amount,currency,interval,interval_count,quantity,"
        "discount_percent,start_date,end_date\n"
    )
    rows = []
    for n, company in enumerate(CONTRACT_COMPANIES[:DEMO_CONTRACTS], start=1):
        eur = n % 7 == 3
        plan, per_seat = CONTRACT_PLANS[n % 3 == 0]
        interval, count = ("month", 3) if n % 4 == 1 else ("year", 1)
        per_period = per_seat * (3 if interval == "month" else 12) * (0.92 if eur else 1.0)
        seats = rng.randrange(20, 121, 5)
        discount = rng.choice((0, 5, 10, 15, 20))
        start = first + rng.randrange(0, max(1, (today - first) // day - 30)) * day
        start = start // day * day
        term_end = add_interval(start, 12, "month")
        ends = None if term_end < today and rng.random() < 0.8 or term_end >= today else term_end
        versions = [(start, seats)]
        amend_at = add_interval(start, rng.choice((4, 6, 8)), "month")
        if rng.random() < 0.4 and amend_at < today and (ends is None or amend_at < ends):
            versions.append((amend_at, seats + rng.randrange(10, 61, 5)))
        country = "DE" if eur else rng.choice(("US", "US", "US", "GB", "CA"))
        for i, (at, quantity) in enumerate(versions):
            last = i == len(versions) - 1
            end = ends if last else versions[i + 1][0]
            rows.append(
                f"c-{n:03d},ent{n:03d},{company.replace(',', '')},{country},{plan},{per_period:.2f},"
                f"{'eur' if eur else 'usd'},{interval},{count},{quantity},{discount},"
                f"{time.strftime('%Y-%m-%d', time.gmtime(at))},"
                f"{time.strftime('%Y-%m-%d', time.gmtime(end)) if end is not None else ''}\n"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(rows))
    return len(rows)


def generate(
    store: Store,
    customers: int = 1000,
    months: int = 24,
    seed: int = 42,
    now: int | None = None,
    progress_every: int = 10000,
    finance_dir: Path | None = None,
    events_dir: Path | None = None,
    currencies: dict[str, int] | None = None,
    id_prefix: str = "",
) -> dict:
    """Write a whole account into `store` (spend and margin files into `finance_dir`, product
    events into `events_dir`); returns counts. `currencies` (currency -> weight) are those its customers
    are billed in (DEFAULT_CURRENCIES: mostly USD); `id_prefix` makes its ids its own (a second account)."""
    if customers < 1:
        raise ValueError("customers must be at least 1")
    if months < 1:
        raise ValueError("months must be at least 1")
    rng = random.Random(seed)
    now = now or int(time.time())
    start = add_interval(now, -months, "month")
    acct = Account(store, now, id_prefix=id_prefix)
    cat = _catalogue(acct, start - 30 * DAY)
    coupons = [
        acct.coupon(start, percent_off=20.0, duration="forever", id="LOYAL20"),
        acct.coupon(start, percent_off=50.0, duration="repeating", duration_in_months=3, id="LAUNCH50"),
        acct.coupon(start, amount_off=1000, currency="usd", duration="once", id="WELCOME10"),
    ]
    began = time.monotonic()
    signups_by_month_channel: dict[tuple[str, str], int] = {}
    writer = ProductEventWriter(events_dir) if events_dir is not None else None
    for n, signup in enumerate(_signup_times(rng, customers, start, now), start=1):
        channel = rng.choices(CHANNELS, weights=CHANNEL_WEIGHTS)[0]
        month = time.strftime("%Y-%m", time.gmtime(signup))
        signups_by_month_channel[(month, channel)] = signups_by_month_channel.get((month, channel), 0) + 1
        life: dict = {}
        _simulate_customer(acct, cat, rng, n, signup, now, coupons, channel, life, currencies, id_prefix)
        if writer is not None:
            customer_events(writer, n, signup, life, now, seed)
        if n % progress_every == 0:
            log.info("demo: %d/%d customers (%.0f/s)", n, customers, n / (time.monotonic() - began))
    acct.flush()
    if finance_dir is not None:
        write_finance_files(finance_dir, signups_by_month_channel, rng)
    counts = {kind: store.count(kind) for kind in ("customer", "subscription", "invoice", "line_item", "event")}
    if writer is not None:
        writer.close()
        counts["product_event"] = writer.count
    store.set_meta("now", str(now))
    store.set_meta("counts", json.dumps(counts))
    return counts


def eu_customers(customers: int) -> int:
    """How many customers the demo's EU account has beside `customers` in the US one (at least one)."""
    return max(1, customers // EU_SHARE)


def ensure_generated_eu(folder: Path, customers: int, months: int, seed: int, now: int) -> Store:
    """The demo's second account (README "Several Stripe accounts"): a European entity billing in EUR,
    eu_customers(customers) customers with ids of its own (`cus_demoeu...`), no product events or finance
    files; generated once beside the US store and reused with it."""
    key = hashlib.sha1(f"{GENERATOR_VERSION}:eu:{customers}:{months}:{seed}:{now}".encode()).hexdigest()[:12]
    path = folder / f"stripe-eu-{key}.sqlite"
    if path.exists():
        store = Store(path)
        if store.get_meta("now"):
            return store
        path.unlink()
    tmp = folder / f"stripe-eu-{key}.partial.sqlite"
    tmp.unlink(missing_ok=True)
    partial = Store(tmp)
    count = eu_customers(customers)
    generate(partial, customers=count, months=months, seed=seed + 1, now=now, currencies=EU_CURRENCIES, id_prefix="eu")
    partial.close()
    tmp.rename(path)
    print(f"  and the EU account: {count} customers billed in EUR")
    return Store(path)


def ensure_generated(folder: Path, customers: int, months: int, seed: int) -> tuple[Store, int]:
    """The demo store for these parameters and today, generated once and reused; the finance files
    (marketing_spend.csv, gross_margin.csv, pnl.csv, contracts.csv) are written beside it, in
    `folder / "finance"`, and the product events in `folder / "events"`. The EU account's store is
    ensure_generated_eu's."""
    import shutil

    now = int(time.time()) // DAY * DAY  # midnight UTC: the same store all day
    key = hashlib.sha1(f"{GENERATOR_VERSION}:{customers}:{months}:{seed}:{now}".encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"stripe-{key}.sqlite"
    if path.exists() and (folder / "events").is_dir():
        store = Store(path)
        if store.get_meta("now"):
            write_contracts_file(folder / "finance" / "contracts.csv", now, months, seed)
            return store, int(store.get_meta("now"))
        path.unlink()
    for old in folder.glob("stripe-*.sqlite*"):
        old.unlink()
    shutil.rmtree(folder / "events", ignore_errors=True)
    shutil.rmtree(folder / "events.partial", ignore_errors=True)
    tmp = folder / f"stripe-{key}.partial.sqlite"
    tmp.unlink(missing_ok=True)
    print(f"Generating the demo account: {customers} customers over {months} months (seed {seed})...")
    began = time.monotonic()
    partial = Store(tmp)
    counts = generate(
        partial,
        customers=customers,
        months=months,
        seed=seed,
        now=now,
        finance_dir=folder / "finance",
        events_dir=folder / "events.partial",
    )
    partial.close()
    contracts = write_contracts_file(folder / "finance" / "contracts.csv", now, months, seed)
    (folder / "events.partial").rename(folder / "events")
    tmp.rename(path)
    print(
        f"  {counts['customer']} customers, {counts['subscription']} subscriptions, {counts['invoice']} invoices, "
        f"{counts['line_item']} invoice lines, {counts['product_event']} product events "
        f"in {time.monotonic() - began:.1f}s"
    )
    print(f"  and {DEMO_CONTRACTS} contracts billed outside Stripe ({contracts} versions, finance/contracts.csv)")
    return Store(path), now
