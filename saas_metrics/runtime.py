"""Process-wide wiring: the settings in force, the warehouse URL, and the environment dbt/dlt/Dagster read.

The settings are read from the environment once (config.py is the one module reading it); a caller with
other settings (the demo: its own Stripe server, finance files and events) puts them in force with
`using(settings)` instead of changing the process environment, and everything below - Dagster resources
(SettingsResource, WarehouseResource), the refresh (orchestration/run.py) - reads `settings()`.
`prepare_environment()` exports what the subprocesses read (dbt's profiles.yml, dlt, dagster.yaml), from
the settings in force; `dagster dev` started by `saas-metrics ui` gets the same from it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from saas_metrics.config import (
    DLT_CREDENTIALS_ENV,
    PROJECT_DIR,
    Settings,
    dbt_environment_variables,
    exported_dlt_credentials,
    load_settings,
    parse_database_url,
    warehouse_environment,
)
from saas_metrics.postgres import DAGSTER_DB_NAME, EmbeddedPostgres

_in_force: list[Settings] = []


@lru_cache(maxsize=1)
def environment_settings() -> Settings:
    """The settings the environment gives (and a .env file), read once."""
    return load_settings()


def settings() -> Settings:
    """The settings in force: those `using` put in force, else the environment's."""
    return _in_force[-1] if _in_force else environment_settings()


# tests read the environment again after changing it
settings.cache_clear = environment_settings.cache_clear  # type: ignore[attr-defined]


@contextlib.contextmanager
def using(current: Settings) -> Iterator[Settings]:
    """Put `current` in force for the block (the demo's settings: a different value, not a mutated
    environment)."""
    _in_force.append(current)
    try:
        yield current
    finally:
        _in_force.pop()


def embedded_postgres(current: Settings | None = None) -> EmbeddedPostgres:
    current = current or settings()
    return EmbeddedPostgres(current.pgdata, current.pg_port)


def warehouse_url() -> str:
    """The settings' DATABASE_URL, or the embedded PostgreSQL (started if it is not running)."""
    current = settings()
    if current.database_url:
        return current.database_url
    return embedded_postgres(current).start()


def dlt_credentials() -> str:
    """The warehouse URL for dlt, with the password libpq would use (dlt insists on one; an empty one
    for trust or peer authentication): prepare_environment() puts it in DESTINATION__POSTGRES__CREDENTIALS."""
    resolved = exported_dlt_credentials()
    url = warehouse_url()
    if parse_database_url(url).password:
        return url
    if resolved:
        mine, theirs = parse_database_url(url), parse_database_url(resolved)
        if (mine.host, mine.port, mine.user, mine.dbname) == (theirs.host, theirs.port, theirs.user, theirs.dbname):
            return resolved
    from saas_metrics import preflight

    return preflight.check_database(url)


def prepare_environment(start_db: bool = True) -> dict[str, str]:
    """Start the embedded database if it is used, and export what dbt, dlt and Dagster read."""
    current = settings()
    if current.uses_embedded_db:
        pg = embedded_postgres(current)
        url = pg.start() if start_db else pg.url()
        dagster_url = pg.url(DAGSTER_DB_NAME)
    else:
        url = current.database_url
        dagster_url = current.dagster_pg_url or url
    env = warehouse_environment(url, dagster_url, current)
    if not current.uses_embedded_db and start_db:
        # connect once, as psql would: a wrong password, a missing database, a closed port end here in
        # one line; the password libpq found (PGPASSWORD, ~/.pgpass, none with trust/peer) goes to dbt and dlt
        from saas_metrics import preflight

        resolved = preflight.check_database(url)
        if dagster_url != url:
            preflight.check_database(
                dagster_url.replace("postgresql+psycopg2://", "postgresql://", 1), "DAGSTER_PG_URL"
            )
        env[DLT_CREDENTIALS_ENV] = resolved
        env["SAAS_METRICS_PG_PASSWORD"] = parse_database_url(resolved).password
    os.environ.update(env)
    link_dagster_home(current)
    return env


def link_dagster_home(current: Settings) -> Path:
    """DAGSTER_HOME holds the repository's dagster.yaml (linked, so edits apply at once)."""
    home = current.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    source = PROJECT_DIR / "dagster.yaml"
    if target.is_symlink() or target.exists():
        if target.resolve() == source.resolve():
            return home
        target.unlink()
    target.symlink_to(source)
    return home


def prepare_dbt(force: bool = False) -> None:
    """Parse the dbt project so Dagster has a current manifest: a few seconds, even when dbt's partial
    parsing finds nothing changed, so it is skipped when nothing it reads changed since the last parse
    (the project's files, the environment variables dbt reads, dbt's version): the nightly's case."""
    from saas_metrics.config import DBT_PROJECT_DIR
    from saas_metrics.dbt_cli import run_dbt

    target = DBT_PROJECT_DIR / "target"
    stamp = target / "manifest.fingerprint"
    fingerprint = dbt_project_fingerprint()
    if not force and (target / "manifest.json").exists() and stamp.exists() and stamp.read_text() == fingerprint:
        return
    result = run_dbt(["parse", "--quiet"])
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip().splitlines()
        raise RuntimeError("dbt parse failed: " + (detail[-1] if detail else "no output"))
    stamp.write_text(fingerprint)


def dbt_project_fingerprint() -> str:
    """A digest of what the manifest depends on: every file of the dbt project (not its target or logs),
    the environment variables its YAML reads (SAAS_METRICS_*, DBT_*; not the password), dbt's version."""
    import hashlib
    from importlib.metadata import version

    from saas_metrics.config import DBT_PROJECT_DIR

    digest = hashlib.sha256(f"dbt-core {version('dbt-core')}\n".encode())
    for path in sorted(DBT_PROJECT_DIR.rglob("*")):
        relative = path.relative_to(DBT_PROJECT_DIR)
        if path.is_file() and relative.parts[0] not in ("target", "logs", "dbt_packages"):
            digest.update(f"{relative}\n".encode())
            digest.update(path.read_bytes())
    for name, value in dbt_environment_variables():
        digest.update(f"{name}={value}\n".encode())
    return digest.hexdigest()


def mrr_methodology(url: str) -> str:
    """The MRR methodology the warehouse's last engine build used (dbt var `mrr_methodology`, METRICS.md
    "Methodology"): what the numbers follow, whatever dbt_project.yml says now."""
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "select substring(settings from 'mrr_methodology ([a-z]+)') from intermediate.int_mrr_engine_batches "
            "where settings is not null order by batch_at desc limit 1"
        )
        row = cur.fetchone()
    return (row[0] if row else None) or "chartmogul"
