"""Running a job of the Definitions in this process, for the settings in force: what `saas-metrics run`
and `saas-metrics demo` call. The job's op names and run config are known here, not in the CLI."""

import contextlib
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from orchestration import dagster_internals
from orchestration.defs.jobs import REFRESH_TAGS
from orchestration.progress import steps_only
from saas_metrics import runs, runtime
from saas_metrics.config import PROJECT_DIR
from saas_metrics.postgres import ConnectionLost

CODE_LOCATION = "orchestration.definitions"  # the name `dagster dev -m orchestration.definitions` gives it


def run_refresh(
    full_refresh: bool = False,
    tags: dict | None = None,
    wait: bool = False,
    on_message: Callable[[str], None] = print,
    log_file: Path | None = None,
):
    """The refresh for the settings in force (saas_metrics.runtime.settings()): refresh_job (load, then
    build) when Stripe is configured, else transform_job (build from what raw_stripe holds)."""
    job_name = "refresh_job" if runtime.settings().stripe_configured else "transform_job"
    return execute_job(
        job_name, full_refresh=full_refresh, tags=tags, wait=wait, on_message=on_message, log_file=log_file
    )


def execute_job(
    job_name: str,
    full_refresh: bool = False,
    tags: dict | None = None,
    wait: bool = False,
    on_message: Callable[[str], None] = print,
    log_file: Path | None = None,
):
    """Run a job of the Definitions in this process, as an ordinary run of the code location.

    The run is created the way the Dagster UI creates one (with the code location's origin), so it is in
    the job's Runs tab and can be re-executed from the UI; it executes here, in this process. A refresh
    takes the refresh lock first (saas_metrics/runs.py): with another refresh running, `wait` waits for
    it, otherwise RefreshRunning ends this one at once.

    A warehouse that stops accepting connections during the run (stopped, restarted) ends it with
    ConnectionLost's one line, however the loss surfaced (a step failure, psycopg2's InterfaceError,
    Dagster's storage giving up).

    With `log_file`, the run's own output (dlt, dbt, Dagster's log lines) goes to that file and the terminal
    gets a line as each step starts and ends (orchestration/progress.py)."""
    url = runtime.warehouse_url()
    try:
        return _execute_job(job_name, url, full_refresh, tags, wait, on_message, log_file)
    except Exception as exc:
        lost = connection_lost(url)
        if lost is None:
            raise
        raise lost from exc


def connection_lost(url: str) -> ConnectionLost | None:
    """After a refresh failed: ConnectionLost when the warehouse accepts no connection now (the failure is
    that, whatever it looked like), else None (the failure is its own)."""
    import psycopg2

    from saas_metrics.config import parse_database_url

    try:
        psycopg2.connect(url, connect_timeout=5).close()
    except psycopg2.OperationalError as exc:
        pg = parse_database_url(url)
        reason = " ".join(str(exc).split()).split(" Is the server running")[0] or "no answer"
        if runtime.settings().uses_embedded_db:
            where = f"DATABASE_URL is unset: the embedded PostgreSQL at {pg.host}:{pg.port}"
            then = "start it (`saas-metrics db start`) and run again"
        else:
            where = f"DATABASE_URL: PostgreSQL at {pg.host}:{pg.port}"
            then = "run again once it accepts connections"
        return ConnectionLost(
            f"{where} stopped accepting connections during the refresh ({reason}): {then}; "
            "the marts are as the last published refresh left them"
        )
    return None


def _execute_job(
    job_name: str, url: str, full_refresh: bool, tags: dict | None, wait: bool, on_message, log_file: Path | None
):
    import dagster as dg

    runtime.prepare_dbt()
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    run_config["ops"] = {"dbt_models": {"config": {"full_refresh": full_refresh}}}
    if runtime.settings().lake.enabled:
        from orchestration.defs.lake import lake_run_config

        run_config["ops"].update(lake_run_config(full_refresh))
    if job_name == "refresh_job":
        run_config["ops"]["stripe"] = {"config": {"full_refresh": full_refresh}}
    run_tags = {runs.TRIGGER_TAG: "cli", **(tags or {})}
    # SIGINT or SIGTERM, wherever it lands: the locks are released on the way out (the ExitStack), the run
    # ends failed, and Interrupted (a KeyboardInterrupt) says what the marts hold
    with runs.interruptible() as signals, contextlib.ExitStack() as stack:
        if REFRESH_TAGS.keys() & _job_tags(job_name).keys():
            stack.enter_context(runs.hold_refresh(url, wait=wait, on_wait=lambda message: on_message(message + "...")))
        instance = stack.enter_context(dg.DagsterInstance.get())
        runs.keep_storage_connections(instance)
        dagster_run, recon_job = dagster_internals.create_run(
            instance, job_name, run_config, run_tags, CODE_LOCATION, str(PROJECT_DIR)
        )
        try:
            if runs.REFRESH_TAG in dagster_run.tags:
                # the run's own lock: while this process lives, nobody takes the run for dead
                stack.enter_context(runs.hold_refresh(url, dagster_run.run_id, wait=wait))
                for dead in runs.mark_dead_refreshes(instance, url, exclude_run_id=dagster_run.run_id):
                    on_message(f"Marked run {dead.run_id[:8]} of {dead.job_name} failed: its process is gone.")
            with contextlib.ExitStack() as output:
                if log_file is not None:
                    output.enter_context(steps_only(instance, dagster_run.run_id, log_file))
                output.enter_context(_interruptions_in_one_line())
                result = dagster_internals.execute_run(recon_job, dagster_run, instance)
        except KeyboardInterrupt as interrupt:  # before Dagster's handlers took over, or after
            _fail_unfinished_run(instance, dagster_run.run_id, getattr(interrupt, "signum", signal.SIGINT))
            raise
        signum = signals.received()
        if signum is None and _interrupted(result):  # a signal Python's wakeup fd did not see
            signum = signal.SIGINT
    if signum is not None:
        raise runs.Interrupted(signum, _unfinished_after_publishing(result, dagster_run)) from None
    if not result.success:
        raise runs.RunFailed(_failure_reason(result))
    return result


# what Dagster's console logger prints for an interrupted step and run after their one-line header
INTERRUPT_ERRORS = ("DagsterExecutionInterruptedError", "KeyboardInterrupt", "saas_metrics.runs.Interrupted")


@contextlib.contextmanager
def _interruptions_in_one_line():
    """While a run executes, an interruption is reported in one line, not in stacks.

    - Dagster's console logger reports an interrupted step and the run it ends with the interruption's
      class and stack: such a record keeps its first line (_HeaderOnlyForInterruptions); the event log
      keeps the whole error.
    - Ctrl-C in a terminal reaches every process of the foreground group, and Dagster's compute-log
      helpers (a Python watcher per mirrored stream) die of it printing a KeyboardInterrupt traceback on
      our stderr. So the run's fd 2 is a pipe, forwarded to the real one by a thread that leaves out such
      tracebacks (_WithoutInterruptTracebacks), and passes everything else as it comes."""
    try:
        terminal = os.dup(2)
    except OSError:  # no stderr at all: nothing to keep clean
        yield
        return
    stream = sys.stderr
    stream.flush()
    isatty = stream.isatty()  # Dagster's console logger colours what goes to a terminal: it still does
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    forwarder = threading.Thread(
        target=_WithoutInterruptTracebacks(terminal).forward, args=(read_fd,), name="stderr", daemon=True
    )
    forwarder.start()
    sys.stderr = _HeaderOnlyForInterruptions(stream, isatty)
    root = logging.getLogger()
    root_handlers = list(root.handlers)
    root.addFilter(_storage_retries_at_debug)
    try:
        yield
    finally:
        root.removeFilter(_storage_retries_at_debug)
        for handler in set(root.handlers) - set(root_handlers):  # logging.warning's basicConfig, for those
            root.removeHandler(handler)
        sys.stderr = stream
        stream.flush()
        os.dup2(terminal, 2)  # the pipe's last write end closes (Dagster has ended its helpers): EOF
        forwarder.join(timeout=10)
        if not forwarder.is_alive():  # else a child still holds the pipe: the thread keeps forwarding
            os.close(terminal)


log = logging.getLogger("saas_metrics.run")
# what Dagster's PostgreSQL storage says while it cannot reach its database: the retries (on the root logger)
# and each log line it could not store (on stderr). Shown with --verbose; a run that fails of it ends with
# ConnectionLost's one line
STORAGE_RETRY = "Retrying failed database connection"
STORAGE_WRITE_FAILED = "Exception while writing logger call to event log"


def _storage_retries_at_debug(record: logging.LogRecord) -> bool:
    if isinstance(record.msg, str) and record.msg.startswith(STORAGE_RETRY):
        log.debug("%s", " ".join(record.getMessage().split()))
        return False
    return True


class _HeaderOnlyForInterruptions:
    """sys.stderr while a run executes: a record (one write) reporting an interruption keeps its first line;
    Dagster's storage failing to store a log line is left to --verbose (STORAGE_WRITE_FAILED)."""

    def __init__(self, stream, isatty: bool):
        self._stream = stream
        self._isatty = isatty

    def write(self, text: str) -> int:
        if text.startswith(STORAGE_WRITE_FAILED):
            log.debug("%s", " ".join(text.split()))
            return len(text)
        if "\n\n" in text and any(marker in text for marker in INTERRUPT_ERRORS):
            text = text.split("\n\n", 1)[0] + "\n"
        return self._stream.write(text)

    def isatty(self) -> bool:
        return self._isatty

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


TRACEBACK = b"Traceback (most recent call last):"


class _WithoutInterruptTracebacks:
    """Forwards what is written to the run's stderr, line by line, leaving out every Python traceback that
    ends in KeyboardInterrupt (the helpers' tracebacks interleave: all their lines are a header, indented
    frames or `KeyboardInterrupt`). Any other traceback, and any other line, is forwarded whole."""

    def __init__(self, out_fd: int):
        self._out = out_fd
        self._block: list[bytes] = []  # the traceback(s) being read
        self._open = 0  # tracebacks in the block not ended yet
        self._partial = b""

    def forward(self, read_fd: int) -> None:
        try:
            while True:
                ready, _, _ = select.select([read_fd], [], [], 0.2)
                if not ready:  # a line without its newline yet (a progress bar): shown as it is
                    if self._partial and not self._block:
                        self._write(self._partial)
                        self._partial = b""
                    continue
                data = os.read(read_fd, 65536)
                if not data:
                    break
                *lines, self._partial = (self._partial + data).split(b"\n")
                for line in lines:
                    self._line(line + b"\n")
        except OSError:
            pass
        finally:
            self._write(b"".join(self._block) + self._partial)
            os.close(read_fd)

    def _line(self, line: bytes) -> None:
        text = line.rstrip()
        if text == TRACEBACK:
            self._block.append(line)
            self._open += 1
        elif not self._block:
            self._write(line)
        elif line.startswith(b" "):
            self._block.append(line)
        elif text == b"KeyboardInterrupt":
            self._open -= 1
            if self._open == 0:  # every traceback in the block ended so: none is shown
                self._block = []
            else:
                self._block.append(line)
        else:  # another exception ends it: shown whole
            self._write(b"".join(self._block) + line)
            self._block, self._open = [], 0

    def _write(self, data: bytes) -> None:
        while data:
            data = data[os.write(self._out, data) :]


def _interrupted(result) -> bool:
    for event in result.all_events:
        if event.event_type_value in ("STEP_FAILURE", "RUN_FAILURE"):
            error = getattr(event.event_specific_data, "error", None)
            if error is not None and any(marker in error.cls_name for marker in INTERRUPT_ERRORS):
                return True
    return False


def _unfinished_after_publishing(result, dagster_run) -> tuple[str, ...]:
    """The steps the interrupted run did not finish once it had published the marts (its marts_publication
    step: orchestration/defs/publish.py); none when it had not (or when every step finished: the signal
    came after the last)."""
    from orchestration.defs.publish import PUBLISH_NODE

    done = {event.step_key for event in result.all_events if event.event_type_value == "STEP_SUCCESS"}
    if PUBLISH_NODE not in done:
        return ()
    failed = [event.step_key for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
    unfinished = set(dagster_run.step_keys_to_execute or ()) - done
    return tuple(dict.fromkeys([key for key in failed if key in unfinished] + sorted(unfinished)))


def _fail_unfinished_run(instance, run_id: str, signum: int) -> None:
    """A run interrupted before Dagster executed it (or in its first moments) is marked failed, as Dagster
    marks one interrupted in a step: not left NOT_STARTED or STARTED for the next refresh to clean up."""
    run = instance.get_run_by_id(run_id)
    if run is not None and not run.is_finished:
        instance.report_run_failed(run, f"interrupted ({signal.Signals(signum).name}) before it finished")


def _job_tags(job_name: str) -> dict:
    from orchestration.definitions import defs

    return dict(defs.resolve_job_def(job_name).tags)


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
