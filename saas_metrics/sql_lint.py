"""sqlfluff on the dbt project (`make lint`, `make format`), with the database its dbt templater needs.

The dbt templater lints what dbt compiles, and compiling asks the database: the templater opens a
connection and caches the relations before the first model, and the macros call is_incremental(),
adapter.get_relation and run_query. So this starts a throwaway embedded PostgreSQL in a temporary
folder, points dbt's profile at it (the variables profiles.yml reads), runs sqlfluff, and removes the
server again. The database is empty, so every model is linted as dbt compiles it for a first, full
build; dbt writes its manifest into the same temporary folder, not into dbt_project/target.

    python -m saas_metrics.sql_lint lint                     # the whole dbt project
    python -m saas_metrics.sql_lint fix dbt_project/models/marts/mrr/mrr_monthly.sql
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from saas_metrics.config import DBT_PROJECT_DIR, PROJECT_DIR, child_environment, dbt_connection_env
from saas_metrics.postgres import EmbeddedPostgres, PostgresError


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_sqlfluff(args: list[str]) -> int:
    """`sqlfluff <args>` from the repository root (where .sqlfluff is) against a throwaway database;
    sqlfluff's exit code (1 when a rule is broken or a model does not compile)."""
    if not any(arg == "-" or (PROJECT_DIR / arg).exists() for arg in args[1:]):  # no path given: all of it
        args = [*args, str(DBT_PROJECT_DIR.relative_to(PROJECT_DIR))]
    with tempfile.TemporaryDirectory(prefix="saas-metrics-sqlfluff-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pgdata", _free_port())
        try:
            url = server.start()
            env = {
                **child_environment(),
                **dbt_connection_env(url),
                "DBT_TARGET_PATH": str(Path(tmp) / "target"),
                "DBT_LOG_PATH": str(Path(tmp) / "logs"),
                "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            }
            return subprocess.run([sys.executable, "-m", "sqlfluff", *args], cwd=PROJECT_DIR, env=env).returncode
        finally:
            server.destroy()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m saas_metrics.sql_lint lint|fix|format [sqlfluff options] [paths]", file=sys.stderr)
        return 2
    try:
        return run_sqlfluff(args)
    except PostgresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
