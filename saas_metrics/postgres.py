"""The embedded PostgreSQL: initdb/pg_ctl on a project-local data directory.

Binaries come from the `pgserver` wheel (so a fresh machine needs nothing but pip), or
from a PostgreSQL found on PATH. The server listens on 127.0.0.1 with password
(scram-sha-256) authentication so BI tools can connect like to any other database.
When run as root (containers, CI), PostgreSQL refuses to start, so the server runs as
an unprivileged system user created for it.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DB_USER = "saas_metrics"
DB_NAME = "saas_metrics"
DAGSTER_DB_NAME = "dagster"
SYSTEM_USER = "saas-metrics-pg"

SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "shared_buffers": "'512MB'",
    "work_mem": "'64MB'",
    "maintenance_work_mem": "'512MB'",
    "max_wal_size": "'4GB'",
    "synchronous_commit": "off",
    "max_connections": "100",
    "timezone": "'UTC'",
    "log_timezone": "'UTC'",
    "jit": "off",
}


class PostgresError(Exception):
    """A one-line, user-facing reason the embedded database cannot be used."""


class ConnectionLost(PostgresError):
    """The warehouse stopped accepting connections while a refresh ran (stopped, restarted, the network):
    whatever surfaced first (psycopg2's InterfaceError, a step failure, Dagster's storage giving up), one line."""


def find_bin_dir() -> Path:
    """The directory holding initdb, pg_ctl and postgres."""
    try:
        import pgserver  # noqa: F401  (the wheel ships the binaries)

        candidate = Path(pgserver.__file__).parent / "pginstall" / "bin"
        if (candidate / "pg_ctl").exists():
            return candidate
    except ImportError:
        pass
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    raise PostgresError("no PostgreSQL binaries found: install the pgserver wheel or put pg_ctl on PATH")


def find_psql() -> Path | None:
    """psql: the one on PATH, else the one the pgserver wheel ships next to pg_ctl (none without either)."""
    on_path = shutil.which("psql")
    if on_path:
        return Path(on_path)
    try:
        candidate = find_bin_dir() / "psql"
    except PostgresError:
        return None
    return candidate if candidate.exists() else None


def binary_major_version(bin_dir: Path) -> str:
    out = subprocess.run([str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True)
    # "postgres (PostgreSQL) 16.2"
    return out.stdout.strip().split()[-1].split(".")[0]


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Status:
    running: bool
    pid: int | None
    port: int | None
    initialized: bool


class EmbeddedPostgres:
    """Lifecycle of one data directory. Every method is safe to call repeatedly."""

    def __init__(self, pgdata: Path, port: int):
        self.pgdata = Path(pgdata)
        self.port = port
        self.home = self.pgdata.parent
        self.log_file = self.home / "postgres.log"
        self.password_file = self.home / "pg_password"
        self._bin_dir: Path | None = None

    # -- paths and users -------------------------------------------------------------------
    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_bin_dir()
        return self._bin_dir

    def _run_as(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                check=True,
                capture_output=True,
            )
        return SYSTEM_USER

    def _grant(self, path: Path, user: str) -> None:
        """Let the unprivileged server user reach `path`: own it, and traverse its parents."""
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        for parent in path.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)
        # the binaries and libraries must be readable too (a root-owned venv may be 0700)
        for parent in [self.bin_dir, *self.bin_dir.parents]:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                parent.chmod(mode | stat.S_IXOTH)

    def _pg(self, tool: str, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        user = self._run_as()
        cmd = [str(self.bin_dir / tool), *args]
        # as root, drop to the server user with its own group only: keeping gid 0 would make the
        # (empty) group bits of root's 0700 folders apply instead of the "other" bits we grant
        identity = {}
        if user:
            identity = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
        try:
            return subprocess.run(
                cmd, capture_output=True, text=True, check=check, timeout=timeout, cwd="/", **identity
            )
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.stdout or "").strip().splitlines()
            raise PostgresError(f"{tool} failed: {detail[-1] if detail else exc}") from exc

    # -- state -----------------------------------------------------------------------------
    @property
    def password(self) -> str:
        if not self.password_file.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            self.password_file.write_text(secrets.token_urlsafe(24))
            self.password_file.chmod(0o600)
        return self.password_file.read_text().strip()

    def url(self, dbname: str = DB_NAME) -> str:
        return f"postgresql://{DB_USER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def _postmaster_pid(self) -> int | None:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return None
        try:
            return int(pid_file.read_text().splitlines()[0])
        except (ValueError, IndexError, OSError):
            return None

    def _running_port(self) -> int | None:
        pid_file = self.pgdata / "postmaster.pid"
        try:
            return int(pid_file.read_text().splitlines()[3])
        except (ValueError, IndexError, OSError):
            return None

    def status(self) -> Status:
        initialized = (self.pgdata / "PG_VERSION").exists()
        pid = self._postmaster_pid()
        running = pid is not None and _pid_alive(pid)
        return Status(
            running=running,
            pid=pid if running else None,
            port=self._running_port() if running else None,
            initialized=initialized,
        )

    # -- lifecycle -------------------------------------------------------------------------
    def init(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            data_major = (self.pgdata / "PG_VERSION").read_text().strip()
            bin_major = binary_major_version(self.bin_dir)
            if data_major != bin_major:
                raise PostgresError(
                    f"data directory {self.pgdata} was made by PostgreSQL {data_major} but the binaries "
                    f"are PostgreSQL {bin_major}: move it away (or set SAAS_METRICS_HOME) to start afresh"
                )
            return
        self.home.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        pwfile = self.home / ".initdb-pw"
        pwfile.write_text(self.password + "\n")
        user = self._run_as()
        if user:
            self._grant(self.pgdata, user)
            self._grant(pwfile, user)
        try:
            self._pg(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                DB_USER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            )
        except PostgresError:
            shutil.rmtree(self.pgdata, ignore_errors=True)
            raise
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.pgdata / "postgresql.auto.conf", "a") as conf:
            conf.write("# written by saas-metrics\n")
            for key, value in SERVER_SETTINGS.items():
                conf.write(f"{key} = {value}\n")

    def start(self, timeout: float = 60) -> str:
        """Start (or reuse) the server; return its connection URL."""
        self.init()
        state = self.status()
        if state.running:
            if state.port != self.port:
                raise PostgresError(
                    f"the embedded PostgreSQL already runs on port {state.port}, not {self.port}: "
                    "run `saas-metrics db stop` first or set SAAS_METRICS_PG_PORT to match"
                )
            self._ensure_databases()
            return self.url()
        stale = self.pgdata / "postmaster.pid"
        if stale.exists():  # a crash left it behind; the process is gone
            stale.unlink()
        if _port_in_use(self.port):
            raise PostgresError(
                f"port {self.port} on 127.0.0.1 is taken by another program: set SAAS_METRICS_PG_PORT to a free port"
            )
        user = self._run_as()
        self.log_file.touch(exist_ok=True)
        if user:
            self._grant(self.log_file, user)
        result = self._pg(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(timeout)),
            "-o",
            f"-p {self.port}",
            "start",
            check=False,
            timeout=timeout + 10,
        )
        if result.returncode != 0:
            raise PostgresError(f"PostgreSQL did not start: {self._last_log_error()}")
        self._ensure_databases()
        return self.url()

    def _last_log_error(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        for line in reversed(lines):
            if "FATAL" in line or "PANIC" in line or "could not" in line:
                return line.split("FATAL:")[-1].strip()
        return lines[-1] if lines else "no log"

    def _ensure_databases(self) -> None:
        import psycopg2

        deadline = time.monotonic() + 30
        while True:
            try:
                conn = psycopg2.connect(self.url("postgres"), connect_timeout=5)
                break
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise PostgresError(f"cannot connect to the embedded PostgreSQL: {exc}".strip()) from exc
                time.sleep(0.2)
        conn.autocommit = True
        with conn.cursor() as cur:
            for name in (DB_NAME, DAGSTER_DB_NAME):
                cur.execute("select 1 from pg_database where datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'create database "{name}"')
        conn.close()

    def stop(self, timeout: float = 60) -> bool:
        """Stop the server if it runs; return whether it was running."""
        state = self.status()
        if not state.running:
            return False
        result = self._pg(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-m",
            "fast",
            "-w",
            "-t",
            str(int(timeout)),
            "stop",
            check=False,
            timeout=timeout + 10,
        )
        if result.returncode != 0 and state.pid and _pid_alive(state.pid):
            os.kill(state.pid, signal.SIGQUIT)
        return True

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.pgdata, ignore_errors=True)
