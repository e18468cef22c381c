"""The `saas-metrics` command line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Sequence

from saas_metrics import runs, runtime
from saas_metrics.config import ConfigError
from saas_metrics.postgres import PostgresError

log = logging.getLogger("saas_metrics")
# platformdirs' complaint in containers without a login session: not ours to print
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


class RunFailed(Exception):
    """A pipeline step or a blocking check failed; the message is the one-line reason."""


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
    elif args.action == "bi-role":
        return _bi_role(pg.start(), args)
    return 0


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


# -- running the pipeline -----------------------------------------------------------------------
CODE_LOCATION = "orchestration.definitions"  # the name `dagster dev -m orchestration.definitions` gives it


def execute_job(job_name: str, full_refresh: bool = False, tags: dict | None = None, wait: bool = False):
    """Run a job of the Definitions in this process, as an ordinary run of the code location.

    The run is created the way the Dagster UI creates one (with the code location's origin), so it is in
    the job's Runs tab and can be re-executed from the UI; it executes here, in this process. A refresh
    takes the refresh lock first (saas_metrics/runs.py): with another refresh running, `wait` waits for
    it, otherwise RefreshRunning ends this one at once."""
    import dagster as dg

    runtime.prepare_dbt()
    from orchestration.defs.jobs import REFRESH_TAGS

    run_config: dict = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    run_config["ops"] = {"dbt_models": {"config": {"full_refresh": full_refresh}}}
    if job_name == "refresh_job":
        run_config["ops"]["stripe"] = {"config": {"full_refresh": full_refresh}}
    run_tags = {runs.TRIGGER_TAG: "cli", **(tags or {})}
    url = runtime.warehouse_url()
    with contextlib.ExitStack() as stack:
        if REFRESH_TAGS.keys() & _job_tags(job_name).keys():
            stack.enter_context(runs.hold_refresh(url, wait=wait, on_wait=lambda message: print(message + "...")))
        instance = stack.enter_context(dg.DagsterInstance.get())
        dagster_run, recon_job = _create_run(instance, job_name, run_config, run_tags)
        if runs.REFRESH_TAG in dagster_run.tags:
            # the run's own lock: while this process lives, nobody takes the run for dead
            stack.enter_context(runs.hold_refresh(url, dagster_run.run_id, wait=wait))
            for dead in runs.mark_dead_refreshes(instance, url, exclude_run_id=dagster_run.run_id):
                print(f"Marked run {dead.run_id[:8]} of {dead.job_name} failed: its process is gone.")
        from dagster._core.execution.api import execute_run

        result = execute_run(recon_job, dagster_run, instance, raise_on_error=False)
    if not result.success:
        raise RunFailed(_failure_reason(result))
    return result


def _job_tags(job_name: str) -> dict:
    from orchestration.definitions import defs

    return dict(defs.resolve_job_def(job_name).tags)


def _create_run(instance, job_name: str, run_config: dict, tags: dict):
    """A NOT_STARTED run of `job_name` with the code location's origin (what `dagster job launch` creates)."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._utils.hosted_user_process import recon_job_from_origin

    from saas_metrics.config import PROJECT_DIR

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            executable_path=sys.executable, module_name=CODE_LOCATION, working_directory=str(PROJECT_DIR)
        ),
        location_name=CODE_LOCATION,
    )
    with origin.create_location(instance) as location:
        (repository,) = location.get_repositories().values()
        remote_job = repository.get_full_job(job_name)
        plan = location.get_execution_plan(
            remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=instance
        ).execution_plan_snapshot
        dagster_run = instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=run_config,
            resolved_op_selection=None,
            step_keys_to_execute=plan.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags={**remote_job.tags, **tags},
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=repository.asset_graph,
        )
    return dagster_run, recon_job_from_origin(dagster_run.job_code_origin)


def _failure_reason(result) -> str:
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            failure = getattr(event.event_specific_data, "user_failure_data", None)
            if failure is not None and failure.description:  # a dg.Failure says it in its own words
                return f"step {event.step_key} failed: {' '.join(failure.description.split())}"
            error = event.event_specific_data.error
            message = error.message.strip() if error else "unknown error"
            cause = error.cause if error else None
            while cause is not None:  # the innermost cause says what went wrong
                message = cause.message.strip()
                cause = cause.cause
            return f"step {event.step_key} failed: {message.splitlines()[0] if message else 'unknown error'}"
    return "the run failed (see the Dagster UI for details)"


def cmd_run(args: argparse.Namespace) -> int:
    settings = runtime.settings()
    runtime.prepare_environment()
    if settings.stripe_configured:
        from saas_metrics import preflight

        job_name = "refresh_job"
        target = settings.stripe_api_base or "Stripe"
        # a refused key or a server that is not there ends here, in seconds
        preflight.check_stripe(settings.stripe_api_key, settings.stripe_api_base)
        print(f"Loading Stripe from {target}, then building the marts...")
    else:
        job_name = "transform_job"
        print("STRIPE_API_KEY is not set: skipping the Stripe load, building the marts from raw_stripe as it is.")
    started = time.monotonic()
    execute_job(job_name, full_refresh=args.full_refresh, wait=args.wait)
    print(f"Refresh finished in {time.monotonic() - started:.0f}s.")
    print_summary()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from saas_metrics.fakestripe import demo
    from saas_metrics.fakestripe.server import StripeProtocolServer

    settings = runtime.settings()
    if not settings.uses_embedded_db:
        print("note: DATABASE_URL is set; the demo still loads into the embedded PostgreSQL only.")
        os.environ.pop("DATABASE_URL", None)
        runtime.settings.cache_clear()
        settings = runtime.settings()
        if not settings.uses_embedded_db:
            raise ConfigError("DATABASE_URL comes from a .env file: unset it there to run the demo")
    started = time.monotonic()
    store, now = demo.ensure_generated(
        settings.home / "demo", customers=args.customers, months=args.months, seed=args.seed
    )
    runtime.prepare_environment()
    with StripeProtocolServer(store, api_key=demo.DEMO_API_KEY, now=now) as server:
        os.environ["STRIPE_API_KEY"] = demo.DEMO_API_KEY
        os.environ["STRIPE_API_BASE"] = server.url
        os.environ.setdefault("STRIPE_MAX_RPS", "1000")
        os.environ["SAAS_METRICS_SPEND_CSV"] = str(settings.home / "demo" / "finance" / "marketing_spend.csv")
        os.environ["SAAS_METRICS_GROSS_MARGIN_CSV"] = str(settings.home / "demo" / "finance" / "gross_margin.csv")
        os.environ["SAAS_METRICS_PNL_CSV"] = str(settings.home / "demo" / "finance" / "pnl.csv")
        os.environ["SAAS_METRICS_EVENTS_DIR"] = str(settings.home / "demo" / "events")
        os.environ.pop("SAAS_METRICS_EVENTS_DB_URL", None)
        runtime.settings.cache_clear()
        print(f"Serving the demo account over Stripe's protocol at {server.url}; loading and building...")
        execute_job("refresh_job", full_refresh=True, tags={"saas_metrics/demo": "true"})
        print(f"Demo finished in {time.monotonic() - started:.0f}s ({server.stats.requests} Stripe requests).")
    print_summary()
    return 0


def print_summary() -> None:
    import psycopg2

    url = runtime.warehouse_url()
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select coalesce(sum(mrr), 0), count(*) filter (where mrr > 0) from marts.customer_mrr_current")
        current_mrr, customers = cur.fetchone()
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
    print()
    print("Look further:")
    print('  psql "$(saas-metrics db url)" -c "select * from marts.mrr_monthly order by month desc limit 12"')
    print("  saas-metrics ui          # the Dagster UI on this instance, with this run in its history")


def cmd_report(args: argparse.Namespace) -> int:
    import psycopg2

    from saas_metrics import report

    month = report.parse_month(args.month) if args.month else None
    settings = runtime.settings()
    with psycopg2.connect(runtime.warehouse_url()) as conn:
        files = report.write_report(conn, settings.home, month)
    print("\n".join(files.cards))
    print(f"HTML: {files.html}")
    print(f"PDF:  {files.pdf}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    runtime.prepare_environment()
    runtime.prepare_dbt()
    os.environ[runtime.DBT_PREPARED_ENV] = "1"
    bindir = os.path.dirname(sys.executable)
    # this environment's tools (dbt) first, whether or not the virtualenv is activated
    os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    dagster = os.path.join(bindir, "dagster")
    argv = [dagster, "dev", "-m", "orchestration.definitions", "-h", args.host, "-p", str(args.port)]
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
        "if a step or a blocking check fails.",
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
        "into the embedded PostgreSQL.",
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
        help="start (or reuse), stop, status (exit 3 when stopped), url (connection string), "
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

    ui = sub.add_parser(
        "ui",
        help="open the Dagster UI on this instance (dagster dev)",
        description="Start `dagster dev` with the same database and run history as `run`.",
    )
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
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
        return args.func(args)
    except (ConfigError, PostgresError, RunFailed, runs.RefreshRunning) as exc:
        if args.debug:
            traceback.print_exc()
        print(f"saas-metrics: error: {exc}", file=sys.stderr)
        return 1
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


if __name__ == "__main__":
    sys.exit(main())
