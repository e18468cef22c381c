"""Shared fixtures: a throwaway PostgreSQL for the session, isolated settings, a Stripe server."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest

from saas_metrics import runtime
from saas_metrics.postgres import EmbeddedPostgres

CONFIG_VARS = [
    "DATABASE_URL",
    "DAGSTER_PG_URL",
    "DAGSTER_HOME",
    "STRIPE_API_KEY",
    "STRIPE_API_BASE",
    "STRIPE_MAX_RPS",
    "STRIPE_CONCURRENCY",
    "STRIPE_TIMEOUT",
    "SAAS_METRICS_HOME",
    "SAAS_METRICS_PG_PORT",
    "DESTINATION__POSTGRES__CREDENTIALS",
    "SAAS_METRICS_EVENTS_DB_URL",
    "SAAS_METRICS_EVENTS_TABLE",
    "SAAS_METRICS_EVENTS_COLUMNS",
    "SAAS_METRICS_EVENTS_DIR",
    "SAAS_METRICS_EVENTS_FILE_COLUMNS",
    "SAAS_METRICS_EVENTS_LATE_WINDOW_HOURS",
    "SAAS_METRICS_ACCOUNT_MAPPING_CSV",
    "SAAS_METRICS_ACCOUNT_METADATA_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "SAAS_METRICS_WEBHOOK_DEBOUNCE_SECONDS",
    "SAAS_METRICS_WEBHOOK_MAX_DELAY_SECONDS",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def pg_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("saas-metrics-home")


@pytest.fixture(scope="session")
def pg(pg_home) -> Iterator[EmbeddedPostgres]:
    """The session's PostgreSQL, started from the same code users run, torn down at the end."""
    server = EmbeddedPostgres(pg_home / "pgdata", free_port())
    server.start()
    yield server
    server.destroy()


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch, tmp_path):
    """No test sees the developer's own configuration (or a .env file), and none leaves the process environment
    changed for the next (a refresh run in-process exports the warehouse's credentials for dlt)."""
    saved = os.environ.copy()
    for var in CONFIG_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SAAS_METRICS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    runtime.settings.cache_clear()
    yield
    runtime.settings.cache_clear()
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def fresh_database(pg):
    """Make a new, empty database on the session server; returns its URL."""
    counter = {"n": 0}

    def make(prefix: str = "t") -> str:
        counter["n"] += 1
        name = f"{prefix}_{os.getpid()}_{counter['n']}"
        conn = psycopg2.connect(pg.url("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'drop database if exists "{name}"')
            cur.execute(f'create database "{name}"')
        conn.close()
        return pg.url(name)

    return make


def query(url: str, sql: str, params=None) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def n(value) -> str:
    """A number as the assertions write it: "null", or the decimal without trailing zeros ("12.5", "100")."""
    return "null" if value is None else format(Decimal(value).normalize(), "f")
