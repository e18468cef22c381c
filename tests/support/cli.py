"""The `saas-metrics` command as a user runs it: its own home and embedded PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port

CLI = str(Path(sys.executable).parent / "saas-metrics")


def run_cli(*args: str, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


def user_env(home: Path) -> dict:
    """The environment of a user whose saas-metrics home is `home`: none of this process's Stripe, Dagster or
    warehouse settings, and a port of its own for the embedded PostgreSQL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "DAGSTER_", "DATABASE_URL"))}
    env.update(SAAS_METRICS_HOME=str(home), SAAS_METRICS_PG_PORT=str(free_port()))
    return env


def start_ui(env: dict, port: int, **popen_kwargs) -> subprocess.Popen:
    """`saas-metrics ui` in the background, in a session of its own (stop it with os.killpg)."""
    return subprocess.Popen(
        [CLI, "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        **popen_kwargs,
    )
