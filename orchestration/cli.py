"""The `saas-metrics` command line."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Sequence

from saas_metrics import runs, runtime
from saas_metrics.config import DBT_PREPARED_ENV, ConfigError, path_with, warnings_with
from saas_metrics.postgres import PostgresError

log = logging.getLogger("saas_metrics")
# platformdirs' complaint in containers without a login session: not ours to print
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


# -- database ----------------------------------------------------------------------------------
def cmd_db(args: argparse.Namespace) -> int:
    settings = runtime.settings()
    if not settings.uses_embedded_db:
        if args.action == "url":
            print(settings.database_url)
            return 0
        if args.action == "bi-role":
            return _bi_role(settings.database_url, args)
        raise ConfigError("DATABASE_URL is set, so the embedded PostgreSQL is not used (`db url` prints it)")
    pg = runtime.embedded_postgres(settings)
    if args.action == "start":
        pg.start()
        print(f"embedded PostgreSQL running on 127.0.0.1:{settings.pg_port} (data in {settings.pgdata})")
    elif args.action == "stop":
        print("stopped" if pg.stop() else "not running")
    elif args.action == "status":
        state = pg.status()
        if state.running:
            print(f"running: pid {state.pid}, 127.0.0.1:{state.port}, data in {settings.pgdata}")
        else:
            print(f"not running ({'initialized' if state.initialized else 'not initialized'}: {settings.pgdata})")
            return 3
    elif args.action == "url":
        print(pg.url())
        if not pg.status().running:  # stdout stays the URL alone (for `psql "$(saas-metrics db url)"`)
            print(STOPPED_NOTE, file=sys.stderr)
    elif args.action == "bi-role":
        return _bi_role(pg.start(), args)
    return 0


STOPPED_NOTE = (
    "saas-metrics: the embedded PostgreSQL is stopped: nothing answers at this URL until "
    "`saas-metrics db start` (or a run) starts it"
)


def _bi_role(database_url: str, args: argparse.Namespace) -> int:
    from saas_metrics.config import DBT_PROJECT_DIR
    from saas_metrics.warehouse import create_bi_role, personal_columns

    runtime.prepare_dbt()  # the marts' personal columns, from the models' yml
    role = create_bi_role(
        database_url,
        args.name,
        rotate_password=args.rotate_password,
        include_personal_data=args.include_personal_data,
        personal=personal_columns(DBT_PROJECT_DIR / "target" / "manifest.json"),
    )
    print(role.url)
    if not role.password_set:
        print(
            f"{args.name} exists: its password is unchanged (--rotate-password sets a new one)",
            file=sys.stderr,
        )
    return 0


# -- lake mode's local Spark cluster -------------------------------------------------------------
def cmd_lake(args: argparse.Namespace) -> int:
    from saas_metrics.lake.cluster import ClusterError, LocalCluster

    settings = runtime.settings()
    lake = settings.lake
    if not lake.runs_local_driver:
        raise ConfigError(f"SAAS_METRICS_SPARK_URL is {lake.spark_url}: that cluster is yours to run, not `lake`'s")
    cluster = LocalCluster(lake, settings.home / "lake")
    try:
        if args.action == "start":
            status = cluster.start(on_message=print)
        elif args.action == "stop":
            stopped = cluster.stop()
            print(f"stopped {', '.join(stopped)}" if stopped else "not running")
            return 0
        else:
            status = cluster.status()
    except ClusterError as exc:
        raise ConfigError(str(exc)) from None
    _print_lake_status(status, lake, settings.home / "lake")
    return 0 if status.running else 3


def _print_lake_status(status, lake, folder) -> None:
    if not status.any_running:
        print(f"not running (saas-metrics lake start; state in {folder})")
        return
    for role, pid in status.processes.items():
        print(f"  {role:<8} {'pid ' + str(pid) if pid else 'not running'}")
    if lake.runs_local_master:
        print(f"  master {lake.master_url}: {status.alive_workers} of {lake.workers} workers alive, "
              f"{status.cores} cores, {status.memory_mb} MB for executors")  # fmt: skip
    print(f"  Spark Connect {lake.client_url}: {'ready' if status.connect_ready else 'not answering'}")
    if not lake.enabled:
        print('  lake mode is off: set SAAS_METRICS_LAKE_URL to use this cluster (README "Lake mode")')


# -- running the pipeline -----------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from orchestration.run import run_refresh

    settings = runtime.settings()
    runtime.prepare_environment()
    if settings.stripe_accounts_file:
        # each account's refused key or outage is reported by name after the others are loaded (no preflight:
        # one account's bad key must not stop the others)
        names = ", ".join(account.name for account in settings.stripe_accounts)
        print(f"Loading {len(settings.stripe_accounts)} Stripe accounts ({names}), then building the marts...")
    elif settings.stripe_configured:
        from saas_metrics import preflight

        target = settings.stripe_api_base or "Stripe"
        # a refused key or a server that is not there ends here, in seconds
        preflight.check_stripe(settings.stripe_api_key, settings.stripe_api_base)
        print(f"Loading Stripe from {target}, then building the marts...")
    else:
        print("STRIPE_API_KEY is not set: skipping the Stripe load, building the marts from raw_stripe as it is.")
    started = time.monotonic()
    result = run_refresh(full_refresh=args.full_refresh, wait=args.wait, on_message=print)
    fired = fired_checks(result)
    print(f"Refresh finished in {time.monotonic() - started:.0f}s{_with_checks(fired)}")
    print_summary(fired)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from orchestration.run import run_refresh
    from saas_metrics.config import StripeAccount, demo_settings
    from saas_metrics.demo import account
    from saas_metrics.demo.server import StripeProtocolServer

    settings = runtime.settings()
    if not settings.uses_embedded_db:
        print("note: DATABASE_URL is set; the demo still loads into the embedded PostgreSQL only.")
    started = time.monotonic()
    demo_dir = settings.home / "demo"
    store, now = account.ensure_generated(demo_dir, customers=args.customers, months=args.months, seed=args.seed)
    eu_store = account.ensure_generated_eu(demo_dir, args.customers, args.months, args.seed, now)
    # two Stripe accounts, each served over Stripe's protocol by a server of its own (README "Several Stripe
    # accounts"): the US one (mostly USD) and a European entity's (EUR)
    with (
        StripeProtocolServer(store, api_key=account.DEMO_API_KEY, now=now) as server,
        StripeProtocolServer(eu_store, api_key=account.DEMO_EU_API_KEY, now=now) as eu_server,
    ):
        accounts = (
            StripeAccount("us", account.DEMO_API_KEY, "(demo)", api_base=server.url),
            StripeAccount("eu", account.DEMO_EU_API_KEY, "(demo)", api_base=eu_server.url),
        )
        demo = demo_settings(settings, server.url, account.DEMO_API_KEY, demo_dir, stripe_accounts=accounts)
        # the demo's settings are a value of their own, put in force for the run: nothing in the process
        # environment changes but what prepare_environment exports for dbt and dlt
        with runtime.using(demo):
            runtime.prepare_environment()
            _forget_other_accounts(runtime.warehouse_url(), {a.name for a in accounts})
            log_file = settings.home / "logs" / "demo.log"
            print(
                f"Serving the demo's two Stripe accounts over Stripe's protocol (us at {server.url}, eu at "
                f"{eu_server.url}); loading and building (every line dlt, dbt and Dagster print: {log_file})..."
            )
            result = run_refresh(
                full_refresh=True, tags={"saas_metrics/demo": "true"}, on_message=print, log_file=log_file
            )
            fired = fired_checks(result)
            requests = server.stats.requests + eu_server.stats.requests
            took = f"{time.monotonic() - started:.0f}s ({requests} Stripe requests)"
            print(f"Demo finished in {took}{_with_checks(fired)}")
            print_summary(fired)
    return 0


def _forget_other_accounts(url: str, accounts: set[str]) -> None:
    """The demo's raw Stripe rows are its two accounts': rows an earlier demo loaded as another account (one
    account `default`, before the demo had two) are deleted, as the demo reloads everything."""
    import psycopg2

    from ingestion import stripe
    from ingestion.raw_tables import add_missing_column
    from saas_metrics.config import LEGACY_STRIPE_ACCOUNT, RAW_STRIPE_SCHEMA

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select 1 from information_schema.schemata where schema_name = %s", (RAW_STRIPE_SCHEMA,))
        if cur.fetchone() is None:
            return
    add_missing_column(url, stripe.TABLES, "account", LEGACY_STRIPE_ACCOUNT)
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select table_name from information_schema.tables where table_schema = %s", (RAW_STRIPE_SCHEMA,))
        present = {row[0] for row in cur.fetchall()}
        for table in stripe.TABLES.columns:
            if table in present:
                cur.execute(
                    f'delete from "{RAW_STRIPE_SCHEMA}"."{table}" where account <> all(%s)', (sorted(accounts),)
                )


def fired_checks(result) -> list:
    """The asset checks of a finished run that did not pass (warnings, and errors that do not block): the run
    still succeeded, so nothing else says they fired."""
    evaluations = result.get_asset_check_evaluations() if result is not None else []
    return [evaluation for evaluation in evaluations if not evaluation.passed]


def _with_checks(fired: list) -> str:
    if not fired:
        return "."
    return f", with {len(fired)} check{'s' if len(fired) > 1 else ''} that did not pass (below)."


MAX_CHECK_DETAIL = 400  # characters of a fired check's line after its name: the rest is in the Dagster UI


def check_lines(fired: list) -> list[str]:
    """One line per fired check: severity, check name, asset, and what it found (its description, else its
    metadata as `key value` pairs: the fx check's missing_rate_<currency>, the reconciliation's gap)."""
    lines = []
    for evaluation in sorted(fired, key=lambda e: (e.severity.value != "ERROR", e.check_name)):
        detail = evaluation.description or "; ".join(
            f"{key} {getattr(value, 'value', value)}"
            for key, value in evaluation.metadata.items()
            if not key.startswith("dagster")
        )
        detail = " ".join(str(detail).split())
        if len(detail) > MAX_CHECK_DETAIL:
            detail = detail[: MAX_CHECK_DETAIL - 3] + "..."
        severity = "warning" if evaluation.severity.value == "WARN" else "error"
        lines.append(f"  {severity:<7} {evaluation.check_name} on {evaluation.asset_key.to_user_string()}: {detail}")
    return lines


def print_summary(fired: list | None = None) -> None:
    import psycopg2

    url = runtime.warehouse_url()
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select coalesce(sum(mrr), 0), count(*) filter (where mrr > 0) from marts.customer_mrr_current")
        current_mrr, customers = cur.fetchone()
        cur.execute(
            "select billing_account, coalesce(sum(mrr), 0), count(*) filter (where mrr > 0)"
            " from marts.customer_mrr_current group by 1 order by 2 desc"
        )
        by_account = cur.fetchall()
        cur.execute(
            "select month, starting_mrr, new_mrr, expansion_mrr, reactivation_mrr, contraction_mrr, churned_mrr, "
            "fx_impact, ending_mrr, new_customers, churned_customers from marts.mrr_monthly "
            "where month < date_trunc('month', now()) order by month desc limit 1"
        )
        last = cur.fetchone()
        cur.execute(
            "select month, logo_churn_rate, nrr, arpu, ltv, cac from marts.saas_kpis_monthly "
            "where is_complete_month order by month desc limit 1"
        )
        kpis = cur.fetchone()
    print()
    print(f"  Current MRR        {current_mrr:>14,.2f}  ({customers} paying customers)")
    if len(by_account) > 1:
        split = "  ".join(f"{name} {mrr:,.2f} ({paying})" for name, mrr, paying in by_account)
        print(f"  By account         {split}")
    print(f"  MRR methodology    {runtime.mrr_methodology(url)} (dbt var mrr_methodology; METRICS.md)")
    if last:
        (
            month,
            starting,
            new,
            expansion,
            reactivation,
            contraction,
            churned,
            fx,
            ending,
            n_new,
            n_churned,
        ) = last
        print(
            f"  Waterfall {month:%Y-%m}  starting {starting:,.2f}  + new {new:,.2f}  + expansion {expansion:,.2f}"
            f"  + reactivation {reactivation:,.2f}  - contraction {contraction:,.2f}  - churned {churned:,.2f}"
            f"  + fx {fx:,.2f}  = ending {ending:,.2f}"
        )
        print(f"                     {n_new} new customers, {n_churned} churned")
    if kpis:
        month, churn, nrr, arpu, ltv, cac = kpis

        def fmt(value, pattern):
            return "n/a" if value is None else format(value, pattern)

        print(
            f"  KPIs {month:%Y-%m}       logo churn {fmt(churn * 100 if churn is not None else None, '.1f')}%"
            f"  NRR {fmt(nrr * 100 if nrr is not None else None, '.1f')}%  ARPU {fmt(arpu, ',.2f')}"
            f"  LTV {fmt(ltv, ',.0f')}  CAC {fmt(cac, ',.0f')}"
        )
    if fired:
        print()
        print("Checks that did not pass (the marts are built; the Dagster UI has each check's details):")
        for line in check_lines(fired):
            print(line)
    print()
    psql, activate = _look_further_tools()
    print("Look further:")
    if activate:
        print(f"  . {activate}   # first: saas-metrics is not on PATH until its virtualenv is activated")
    print(f'  {psql} "$(saas-metrics db url)" -c "select * from marts.mrr_monthly order by month desc limit 12"')
    print("  saas-metrics ui          # the Dagster UI on this instance, with this run in its history")


def _look_further_tools() -> tuple[str, str | None]:
    """psql as the user can type it (its name when on PATH, else the path of the one the pgserver wheel
    ships), and the virtualenv's activate script when this environment's saas-metrics is not on PATH."""
    import shutil

    from saas_metrics.postgres import find_psql

    psql = "psql" if shutil.which("psql") else str(find_psql() or "psql")
    bindir = os.path.dirname(sys.executable)
    on_path = shutil.which("saas-metrics")
    if on_path and os.path.dirname(os.path.realpath(on_path)) == os.path.realpath(bindir):
        return psql, None
    activate = os.path.join(bindir, "activate")
    return psql, (activate if os.path.exists(activate) else None)


def cmd_report(args: argparse.Namespace) -> int:
    import psycopg2

    from saas_metrics.analytics import report

    month = report.parse_month(args.month) if args.month else None
    settings = runtime.settings()
    with psycopg2.connect(runtime.warehouse_url()) as conn:
        files = report.write_report(conn, settings.home, month)
    print("\n".join(files.cards))
    print(f"HTML: {files.html}")
    print(f"PDF:  {files.pdf}")
    return 0


def cmd_webhooks(args: argparse.Namespace) -> int:
    from orchestration.webhooks import PATH, serve

    settings = runtime.settings()
    if not settings.webhooks.secrets:
        raise ConfigError(
            "STRIPE_WEBHOOK_SECRET is not set: give the endpoint's signing secret (whsec_..., Stripe Dashboard > "
            "Developers > Webhooks), comma-separated for several endpoints"
        )
    if not settings.stripe_configured:
        raise ConfigError(
            "STRIPE_API_KEY (or SAAS_METRICS_STRIPE_ACCOUNTS) is not set: the refreshes webhooks ask for load Stripe"
        )
    runtime.prepare_environment()
    try:
        receiver = serve(runtime.warehouse_url(), settings, args.host, args.port)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    hooks = settings.webhooks
    print(
        f"Receiving Stripe webhooks on http://{args.host}:{args.port}{PATH} (health: /health); a refresh starts "
        f"{hooks.debounce_seconds:g} s after the last new event, at most {hooks.max_delay_seconds:g} s after the "
        f"first; its output in {settings.home / 'logs' / 'webhook-refreshes.log'} (Ctrl-C to stop)"
    )
    try:
        receiver.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.server_close()
        receiver.debouncer.stop()
    return 0


UI_SUPERSEDED_WARNING = "ignore:Function `dev_command` is superseded"


def cmd_ui(args: argparse.Namespace) -> int:
    runtime.prepare_environment()
    runtime.prepare_dbt()
    os.environ[DBT_PREPARED_ENV] = "1"
    bindir = os.path.dirname(sys.executable)
    # this environment's tools (dbt) first, whether or not the virtualenv is activated
    os.environ["PATH"] = path_with(bindir)
    dagster = os.path.join(bindir, "dagster")
    from saas_metrics.config import PROJECT_DIR

    # the code location's working directory, as a CLI run's origin has it (orchestration/run.py)
    argv = [dagster, "dev", "-m", "orchestration.definitions", "-d", str(PROJECT_DIR)]
    argv += ["-h", args.host, "-p", str(args.port)]
    # `dagster dev` warns when the current folder holds a dagster.yaml other than DAGSTER_HOME's: the checkout's
    # is the one DAGSTER_HOME links to (runtime.link_dagster_home), so it starts from DAGSTER_HOME itself
    os.chdir(runtime.settings().dagster_home)
    # and that `dagster dev` is superseded by `dg dev` (the dg CLI, not installed here): not the operator's to fix
    os.environ["PYTHONWARNINGS"] = warnings_with(UI_SUPERSEDED_WARNING)
    print(f"Dagster UI on http://{args.host}:{args.port} (Ctrl-C to stop)")
    # `dagster dev` stops on SIGTERM by giving it SIGINT's handler; a shell's background job (or a service
    # manager) may start us with SIGINT ignored, which exec keeps: SIGTERM was then ignored too
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.execv(dagster, argv)
    return 0  # pragma: no cover


# -- parser ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saas-metrics",
        description="SaaS metrics (MRR, churn, retention) from Stripe into PostgreSQL marts.",
        epilog="Configuration comes from the environment or a .env file: DATABASE_URL, STRIPE_API_KEY, "
        "STRIPE_API_BASE, STRIPE_MAX_RPS, SAAS_METRICS_HOME, SAAS_METRICS_PG_PORT (see README).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logs")
    parser.add_argument(
        "--debug", action="store_true", help="on an error, show the traceback after the one-line reason"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="one full refresh: load Stripe, build and test every model (through Dagster)",
        description="Load Stripe (if STRIPE_API_KEY is set), then dbt build with every check, "
        "as one Dagster run recorded in the instance. Exit 1 with a one-line reason "
        "if a step or a blocking check fails, or if the warehouse stops accepting connections; interrupted "
        "(Ctrl-C, SIGTERM), it stops in order, the marts as the last good refresh left them, and exits 130 "
        "(SIGINT) or 143 (SIGTERM).",
    )
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="reload all Stripe history instead of the changes since the last load, and rebuild the "
        "incremental models from scratch (do this after upgrading saas-metrics)",
    )
    run.add_argument(
        "--wait",
        action="store_true",
        help="if another refresh is running (from the CLI, the UI or the schedule), wait for it to finish "
        "instead of ending at once",
    )
    run.set_defaults(func=cmd_run)

    demo = sub.add_parser(
        "demo",
        help="the whole pipeline on a generated demo account",
        description="Generate a realistic Stripe account (seeded), serve it over Stripe's "
        "protocol on 127.0.0.1, and run the same refresh as `run` against it, "
        "into the embedded PostgreSQL: a line per step start and end, everything dlt, dbt and Dagster print in "
        "$SAAS_METRICS_HOME/logs/demo.log.",
    )
    demo.add_argument("--customers", type=int, default=1000, help="customers to generate (default 1000)")
    demo.add_argument("--months", type=int, default=24, help="months of history (default 24)")
    demo.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    demo.set_defaults(func=cmd_demo)

    db = sub.add_parser(
        "db",
        help="manage the embedded PostgreSQL; create the BI role",
        description="Manage the embedded PostgreSQL (used when DATABASE_URL is unset), and create the "
        "read-only role BI tools connect with.",
    )
    db.add_argument(
        "action",
        choices=["start", "stop", "status", "url", "bi-role"],
        help="start (or reuse), stop, status (exit 3 when stopped), url (connection string; on a stopped "
        "server, stderr says so), "
        "bi-role (create a login that reads the marts schema only, print its URL)",
    )
    db.add_argument("--name", default="bi_reader", help="role name for bi-role (default bi_reader)")
    db.add_argument(
        "--rotate-password",
        action="store_true",
        help="bi-role: set a new password for an existing role (by default it keeps its password)",
    )
    db.add_argument(
        "--include-personal-data",
        action="store_true",
        help="bi-role: let the role read personal columns too (customers' emails); without it, "
        "running bi-role again takes that away",
    )
    db.set_defaults(func=cmd_db)

    rep = sub.add_parser(
        "report",
        help="render the metrics report (HTML and PDF) for a month from the marts",
        description="Render the metrics report - key-metric cards, MRR chart, cohort heatmap, revenue breakdown, "
        "waterfall, churn risk - as one self-contained HTML file and a PDF under $SAAS_METRICS_HOME/reports/<month>/, "
        "from the marts as last built, and print where. The refresh renders it for the last complete month too.",
    )
    rep.add_argument("--month", metavar="YYYY-MM", help="a complete month (default: the last complete month)")
    rep.set_defaults(func=cmd_report)

    lake = sub.add_parser(
        "lake",
        help="lake mode's local Spark cluster: start, stop, status",
        description='Start, stop or show the local Spark cluster of lake mode (README "Lake mode"): a standalone '
        "master and SAAS_METRICS_LAKE_WORKERS workers (default 2, SAAS_METRICS_LAKE_WORKER_MEMORY each) and a "
        "Spark Connect server, on 127.0.0.1 from SAAS_METRICS_SPARK_PORT (default 7077) on; with "
        "SAAS_METRICS_SPARK_URL=spark://..., only the Spark Connect server, attached to that master. "
        "Needs Java (apt-get install -y openjdk-17-jre-headless) and pyspark (pip install 'saas-metrics[lake]').",
    )
    lake.add_argument("action", choices=["start", "stop", "status"], help="status exits 3 when not running")
    lake.set_defaults(func=cmd_lake)

    ui = sub.add_parser(
        "ui",
        help="open the Dagster UI on this instance (dagster dev)",
        description="Start `dagster dev` with the same database and run history as `run`, from DAGSTER_HOME "
        "(its dagster.yaml is the checkout's; no sign-up pop-up).",
    )
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)

    hooks = sub.add_parser(
        "webhooks",
        help="receive Stripe's webhooks and refresh the marts through the day",
        description="Serve POST /stripe/webhooks (or /stripe/webhooks/<account> with several accounts) for a "
        "Stripe webhook endpoint: every delivery's Stripe-Signature is checked against STRIPE_WEBHOOK_SECRET "
        "(refused and counted when wrong or older than 5 minutes), a new event is recorded in "
        "ops.stripe_webhook_events (a replayed one changes nothing) and starts an incremental refresh "
        "(`saas-metrics run --wait`) once the events stop for SAAS_METRICS_WEBHOOK_DEBOUNCE_SECONDS (60), "
        "at most SAAS_METRICS_WEBHOOK_MAX_DELAY_SECONDS (300) after the first. GET /health says what it received.",
    )
    hooks.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    hooks.add_argument("--port", type=int, default=8787, help="port to listen on (default 8787)")
    hooks.set_defaults(func=cmd_webhooks)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # our own loggers (saas_metrics.*) to stderr, once; Dagster's run logs have their own console logger, and
    # a root handler would print every one of them a second time
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    log.propagate = False
    for noisy in ("stripe", "urllib3", "dlt"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        if args.func in (cmd_run, cmd_demo):  # SIGTERM stops a refresh in order too, at any point
            with runs.interruptible():
                return args.func(args)
        return args.func(args)
    except (ConfigError, PostgresError, runs.RunFailed, runs.RefreshRunning) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"saas-metrics: error: {exc}", file=sys.stderr)
        return 1
    except runs.Interrupted as exc:  # one line saying what the marts hold; 130 (SIGINT) or 143 (SIGTERM)
        if args.debug:
            traceback.print_exc()
        print(f"saas-metrics: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("saas-metrics: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or a failure nobody explained yet: still one line, the rest with --debug
        if args.debug:
            traceback.print_exc()
        first = (str(exc).strip().splitlines() or [""])[0]
        hint = "" if args.debug else " (run with --debug for the traceback)"
        print(f"saas-metrics: error: {type(exc).__name__}: {first}{hint}", file=sys.stderr)
        return 1


def entry() -> None:
    """The `saas-metrics` command: main(), then exit without tearing the interpreter down. A refresh
    leaves Dagster, dbt, dlt, pandas and scikit-learn loaded, and freeing every module and object one by
    one takes seconds after the work is done; everything it wrote is committed and closed by then."""
    import atexit

    code = main()
    atexit._run_exitfuncs()  # what registered a clean-up still gets it (logging, multiprocessing, temp files)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
