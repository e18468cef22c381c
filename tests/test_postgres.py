"""The embedded PostgreSQL's lifecycle, against real initdb/pg_ctl."""

from __future__ import annotations

import socket

import psycopg2
import pytest

from saas_metrics.postgres import EmbeddedPostgres, PostgresError, binary_major_version, find_bin_dir
from tests.conftest import free_port


@pytest.fixture
def server(tmp_path):
    pg = EmbeddedPostgres(tmp_path / "home" / "pgdata", free_port())
    yield pg
    pg.destroy()


def test_start_reuse_stop(server):
    url = server.start()
    first = server.status()
    assert first.running and first.port == server.port
    assert server.start() == url  # reuses the running server
    assert server.status().pid == first.pid
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select current_database(), current_setting('listen_addresses'), current_setting('TimeZone')")
        assert cur.fetchone() == ("saas_metrics", "127.0.0.1", "UTC")
        cur.execute("select datname from pg_database where datname = 'dagster'")
        assert cur.fetchone() == ("dagster",)
    assert server.stop() is True
    assert server.status().running is False
    assert server.stop() is False


def test_password_is_required(server):
    server.start()
    wrong = server.url().replace(server.password, "wrong-password")
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(wrong)


def test_restarts_after_a_crash_left_a_stale_pid_file(server):
    server.start()
    pid_file = server.pgdata / "postmaster.pid"
    server.stop()
    # what a crash leaves: a pid file naming a process that is gone
    pid_file.write_text("999999\n" + str(server.pgdata) + "\n0\n" + str(server.port) + "\n\n127.0.0.1\n")
    assert server.status().running is False
    url = server.start()
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("select 1")
        assert cur.fetchone() == (1,)


def test_port_taken_is_a_one_line_error(server):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", server.port))
        sock.listen()
        with pytest.raises(PostgresError, match=f"port {server.port} on 127.0.0.1 is taken"):
            server.start()


def test_data_directory_from_another_major_version(server):
    server.pgdata.mkdir(parents=True)
    (server.pgdata / "PG_VERSION").write_text("9\n")
    major = binary_major_version(find_bin_dir())
    with pytest.raises(PostgresError, match=f"made by PostgreSQL 9 but the binaries are PostgreSQL {major}"):
        server.start()


def test_second_server_on_other_port_in_same_data_dir_is_refused(server):
    server.start()
    other = EmbeddedPostgres(server.pgdata, free_port())
    with pytest.raises(PostgresError, match="already runs on port"):
        other.start()


def test_bi_role_reads_marts_only(pg, fresh_database):
    from saas_metrics.warehouse import create_bi_role

    url = fresh_database("bi")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("create schema raw_stripe; create table raw_stripe.customers (id text)")
        cur.execute("create schema marts; create table marts.mrr_monthly (month date)")
    bi_url = create_bi_role(url, "metabase_test").url
    with psycopg2.connect(url) as conn, conn.cursor() as cur:  # a mart dbt creates later
        cur.execute("create table marts.cohort_retention (month date)")
    with psycopg2.connect(bi_url) as conn, conn.cursor() as cur:
        cur.execute("select count(*) from marts.mrr_monthly")
        cur.execute("select count(*) from marts.cohort_retention")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("select count(*) from raw_stripe.customers")
    with psycopg2.connect(bi_url) as conn, conn.cursor() as cur:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute("create table marts.nope (x int)")
    assert create_bi_role(url, "metabase_test", rotate_password=True).url != bi_url  # a new password when asked
