"""A run's output as a line or two per step, its whole output in a log file (`saas-metrics demo`).

A refresh prints everything its tools print: dlt's progress blocks, a line per dbt node, Dagster's log line
per event (about 700 lines for the demo). While `steps_only` is in force, this process's stdout and stderr
(file descriptors 1 and 2, so dbt's subprocess and Dagster's helpers too) go to the log file instead, and
the terminal gets one line when a step starts and one when it ends, read from the run's event log."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

POLL_SECONDS = 0.5


@contextlib.contextmanager
def steps_only(instance, run_id: str, log_file: Path) -> Iterator[Callable[[str], None]]:
    """For the block: fds 1 and 2 to `log_file` (overwritten), a line per step start and end to the terminal.
    Yields a function printing a line to the terminal (for the caller's own messages)."""
    import dagster as dg

    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    with open(log_file, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    lock = threading.Lock()

    def say(line: str) -> None:
        with lock:
            terminal.write(line + "\n")

    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    started: dict[str, float] = {}
    cursor: list[str | None] = [None]

    def poll() -> None:
        while True:
            connection = instance.get_records_for_run(run_id, cursor=cursor[0], of_type=kinds)
            for record in connection.records:
                entry = record.event_log_entry
                say(step_line(entry.step_key or "?", entry.dagster_event_type, entry.timestamp, started))
            cursor[0] = connection.cursor
            if not connection.has_more:
                return

    done = threading.Event()

    def watch() -> None:
        while not done.wait(POLL_SECONDS):
            with contextlib.suppress(Exception):  # the storage gone (the warehouse stopped): the run says so
                poll()

    watcher = threading.Thread(target=watch, name="steps", daemon=True)
    watcher.start()
    try:
        yield say
    finally:
        done.set()
        watcher.join(timeout=10)
        with contextlib.suppress(Exception):
            poll()  # the last steps' ends
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        terminal.close()


def step_line(step_key: str, event_type, timestamp: float, started: dict[str, float]) -> str:
    """'  dbt_models ...' when a step starts; '  dbt_models done in 21s' (or 'failed after 3s') when it ends."""
    name = event_type.value if hasattr(event_type, "value") else str(event_type)
    if name == "STEP_START":
        started[step_key] = timestamp
        return f"  {step_key} ..."
    took = f"{timestamp - started.get(step_key, timestamp):.0f}s"
    return f"  {step_key} {'done in ' + took if name == 'STEP_SUCCESS' else 'failed after ' + took}"
