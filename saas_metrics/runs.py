"""One refresh at a time, whoever starts it, and no refresh left STARTED by a dead process.

Two PostgreSQL advisory locks in the warehouse do it (README "Operating it in Dagster"):

- the *refresh lock*: held for the whole of a refresh (`refresh_job`, `transform_job`) by the
  process that runs it (the CLI, or the run worker of a run launched from the Dagster UI or the
  schedule). A second refresh waits for it, or (`saas-metrics run` without `--wait`) ends at once
  with one line saying which refresh is running;
- a *run lock* per run, taken by the same connection as soon as the run exists: it says "this run's
  process is alive". PostgreSQL releases both when the connection closes, so a refresh killed with
  SIGKILL, by the OOM killer or a reboot leaves no lock behind.

A refresh run that Dagster's storage keeps as STARTED while nobody holds its run lock is dead: the
next refresh (and the `dead_refresh_runs_sensor`, every minute in the daemon) marks it failed, so
that the queued nightly is not held behind it forever.

A refresh interrupted by SIGINT (Ctrl-C) or SIGTERM (`kill`, a service manager) stops in order instead
(`interruptible`): Dagster ends the step it was in and the run (failed, in its event log), dbt is
told to stop before it publishes, the locks are released, and the command ends with `Interrupted`'s
one line and 128 + the signal's number (130, 143).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg2

REFRESH_TAG = "saas_metrics/refresh"  # every refresh run carries it (the value says who started it)
TRIGGER_TAG = "saas_metrics/trigger"
# advisory lock keys: (namespace, key) pairs of int4, apart from anything else using advisory locks
REFRESH_NAMESPACE = 0x5A_A5  # (REFRESH_NAMESPACE, 1): the refresh lock
RUN_NAMESPACE = 0x5A_A6  # (RUN_NAMESPACE, crc32(run id)): one run's process is alive
REFRESH_KEY = 1
APPLICATION_NAME = "saas-metrics refresh"
# a run launched by Dagster (UI, schedule) takes its run lock a moment after it is STARTED
STARTED_GRACE_SECONDS = 60.0
POLL_SECONDS = 1.0


class RunFailed(Exception):
    """A pipeline step or a blocking check failed; the message is the one-line reason."""


class RefreshRunning(Exception):
    """Another refresh holds the refresh lock; the message says which (one line)."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM ended the refresh; the message says what the marts hold. A KeyboardInterrupt, so
    that nothing catching Exception on the way out mistakes it for a failure."""

    def __init__(self, signum: int = signal.SIGINT, unfinished: tuple[str, ...] = ()):
        super().__init__(signum, unfinished)
        self.signum = signum
        self.unfinished = unfinished  # steps not done once the build had published the marts (interrupted first)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process the signal ended: 130, 143

    def __str__(self) -> str:
        if self.unfinished:  # the report, and any check after the publication
            more = len(self.unfinished) - 1
            steps = self.unfinished[0] + (f" and {more} more step{'s' if more > 1 else ''}" if more else "")
            return (
                f"interrupted after this refresh published the marts; not finished: {steps} "
                "(the next refresh runs them)"
            )
        return "interrupted; the marts are as the last good refresh left them"


INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Signals:
    """Which of SIGINT and SIGTERM arrived during `interruptible`, whoever's handler took it: the
    interpreter writes every signal's number to the wakeup fd before any Python handler runs, Dagster's
    (which, while a run executes, turns both into DagsterExecutionInterruptedError) included."""

    def __init__(self, read_fd: int | None):
        self._read_fd = read_fd
        self.first: int | None = None

    def received(self) -> int | None:
        """The first of SIGINT and SIGTERM received so far, or None."""
        if self._read_fd is not None:
            try:
                data = os.read(self._read_fd, 4096)
            except BlockingIOError:
                data = b""
            for signum in data:
                if self.first is None and signum in INTERRUPT_SIGNALS:
                    self.first = signum
        return self.first


@contextmanager
def interruptible() -> Iterator[Signals]:
    """For the block, SIGTERM interrupts as SIGINT does: both raise Interrupted (KeyboardInterrupt) where
    the code is, and Dagster, which maps both to its own handler while a run executes, gets SIGTERM in
    order too (without this, a SIGTERM before the run killed the process outright). Nested blocks each
    restore what they found. Outside the main thread (no signal handlers there) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield Signals(None)
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)

    def interrupt(signum, frame):
        raise Interrupted(signum)

    previous = {signum: signal.getsignal(signum) for signum in INTERRUPT_SIGNALS}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    try:
        for signum in INTERRUPT_SIGNALS:
            signal.signal(signum, interrupt)
        yield Signals(read_fd)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        signal.set_wakeup_fd(previous_fd)
        os.close(read_fd)
        os.close(write_fd)


def run_key(run_id: str) -> int:
    """A run id as a signed int4 advisory lock key."""
    value = zlib.crc32(run_id.encode())
    return value - 2**32 if value >= 2**31 else value


@dataclass
class _Connection:
    conn: object
    keys: dict[tuple[int, int], int] = field(default_factory=dict)  # key -> times taken in this process


_held: dict[str, _Connection] = {}
_guard = threading.Lock()


def _connect(url: str, run_id: str | None):
    # keepalives: a holder on another host that vanishes (reboot, network) is noticed within minutes
    conn = psycopg2.connect(
        url,
        application_name=f"{APPLICATION_NAME} {run_id or ''}".strip()[:63],
        connect_timeout=10,
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
    )
    conn.autocommit = True
    return conn


def holder(url: str) -> str:
    """Who holds the refresh lock, for the one-line message: 'run 1a2b3c4d since 09:12 UTC'."""
    try:
        with psycopg2.connect(url, connect_timeout=10) as conn, conn.cursor() as cur:
            cur.execute(
                "select activity.application_name, activity.backend_start "
                "from pg_locks as locks left join pg_stat_activity as activity on activity.pid = locks.pid "
                "where locks.locktype = 'advisory' and locks.classid = %s and locks.objid = %s and locks.granted",
                (REFRESH_NAMESPACE, REFRESH_KEY),
            )
            row = cur.fetchone()
    except psycopg2.Error:
        return "another process"
    if not row:
        return "another process"
    name, since = row
    run_id = (name or "").removeprefix(APPLICATION_NAME).strip()
    who = f"run {run_id[:8]}" if run_id else "starting"
    return who + (f", since {since:%Y-%m-%d %H:%M} UTC" if since else "")


@contextmanager
def hold_refresh(
    url: str,
    run_id: str | None = None,
    *,
    wait: bool,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the refresh lock (and `run_id`'s run lock) for the block.

    Re-entrant within a process: the CLI takes it before it creates the run, and the run's warehouse
    resource, executing in the same process, takes it again without waiting for itself.
    wait=False raises RefreshRunning at once when another process holds it; wait=True polls (so that a
    run canceled while it waits stops), calling `on_wait` once with the holder's description."""
    keys = [(REFRESH_NAMESPACE, REFRESH_KEY)]
    if run_id:
        keys.insert(0, (RUN_NAMESPACE, run_key(run_id)))
    with _guard:
        held = _held.get(url)
        if held is None:
            held = _held[url] = _Connection(_connect(url, run_id))
        elif run_id:  # the lock taken before the run existed now names it (for `holder`)
            with held.conn.cursor() as cur:
                cur.execute("select set_config('application_name', %s, false)", (f"{APPLICATION_NAME} {run_id}",))
    taken: list[tuple[int, int]] = []
    try:
        for key in keys:
            _take(held, key, url, wait, on_wait)
            taken.append(key)
        yield
    finally:
        for key in reversed(taken):
            _release(held, key)
        with _guard:
            if not held.keys and _held.get(url) is held:
                del _held[url]
                held.conn.close()


def _take(held: _Connection, key: tuple[int, int], url: str, wait: bool, on_wait) -> None:
    with _guard:
        if held.keys.get(key):
            held.keys[key] += 1
            return
    announced = False
    while True:
        with _guard, held.conn.cursor() as cur:
            cur.execute("select pg_try_advisory_lock(%s, %s)", key)
            if cur.fetchone()[0]:
                held.keys[key] = 1
                return
        if not wait:
            raise RefreshRunning(f"a refresh is running ({holder(url)}): this one does not start; try again later")
        if not announced and on_wait is not None:
            on_wait(f"a refresh is running ({holder(url)}): waiting for it to finish")
            announced = True
        time.sleep(POLL_SECONDS)


def _release(held: _Connection, key: tuple[int, int]) -> None:
    with _guard:
        held.keys[key] -= 1
        if held.keys[key] == 0:
            del held.keys[key]
            with held.conn.cursor() as cur:
                cur.execute("select pg_advisory_unlock(%s, %s)", key)


def live_run_keys(url: str) -> set[int]:
    """Run-lock keys held right now (by any process, on any host)."""
    with psycopg2.connect(url, connect_timeout=10) as conn, conn.cursor() as cur:
        cur.execute(
            "select objid::bigint from pg_locks where locktype = 'advisory' and classid = %s and granted",
            (RUN_NAMESPACE,),
        )
        # objid is an oid (unsigned); the key was signed
        return {value - 2**32 if value >= 2**31 else value for (value,) in cur.fetchall()}


def keep_storage_connections(instance) -> None:
    """Dagster's PostgreSQL storage opens a new connection for every event it stores (no pool: it is
    built for many short-lived processes); a refresh stores a thousand events (every model, test and
    log line), and each connection costs a process on the server and an authentication. The run holds
    a few open for its duration instead, as Dagster's webserver does (no statement timeout: 0). Called by
    the CLI before its run and by the warehouse resource in every run worker (a run the schedule, a sensor
    or the UI launched: `dagster api execute_run`, whose instance is its own); once per instance."""
    if getattr(instance, "_saas_metrics_pooled", False):
        return
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=8)
    instance._saas_metrics_pooled = True


def mark_dead_refreshes(instance, url: str, *, exclude_run_id: str | None = None, now: float | None = None) -> list:
    """Mark failed every refresh run the instance keeps as STARTED whose process is gone; return them.

    A run is dead when nobody holds its run lock: its process took the lock when it started, and
    PostgreSQL drops it with the process's connection. Runs started by Dagster (not the CLI) get
    STARTED_GRACE_SECONDS to take it. STARTING and CANCELING runs are left to Dagster's run
    monitoring (dagster.yaml)."""
    from dagster import DagsterRunStatus, RunsFilter

    records = instance.get_run_records(filters=RunsFilter(statuses=[DagsterRunStatus.STARTED]))
    candidates = [r for r in records if REFRESH_TAG in r.dagster_run.tags and r.dagster_run.run_id != exclude_run_id]
    if not candidates:
        return []
    live = live_run_keys(url)
    now = time.time() if now is None else now
    dead = []
    for record in candidates:
        run = record.dagster_run
        if run_key(run.run_id) in live:
            continue
        started = record.start_time or record.create_timestamp.timestamp()
        if run.tags.get(TRIGGER_TAG) != "cli" and now - started < STARTED_GRACE_SECONDS:
            continue
        instance.report_run_failed(
            run,
            f"the process running this refresh is gone (killed, out of memory, or the machine restarted) "
            f"without finishing it; marked failed so that later refreshes run (found by "
            f"{'run ' + exclude_run_id[:8] if exclude_run_id else 'saas-metrics'})",
        )
        dead.append(run)
    return dead
