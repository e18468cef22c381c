"""dbt as a subprocess, one way for the CLI, the tests and the benchmarks: the command line (this project's
folders, a target folder of the caller's) with the connection variables profiles.yml reads
(config.dbt_connection_env)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from saas_metrics.config import DBT_PROJECT_DIR, child_environment, dbt_connection_env


def run_dbt(
    args: list[str],
    database_url: str | None = None,
    target_path: Path | None = None,
    vars_: dict | None = None,
) -> subprocess.CompletedProcess:
    """`dbt <args>` on this project; against `database_url` (else the connection the environment names),
    writing into `target_path` (its logs in target_path/logs; else dbt_project/target). Never raises on
    dbt's exit code: the caller says what a failure means."""
    env = child_environment(dbt_connection_env(database_url) if database_url else None)
    cmd = [
        str(Path(sys.executable).parent / "dbt"),
        *args,
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
    ]
    if target_path is not None:
        cmd += ["--target-path", str(target_path), "--log-path", str(Path(target_path) / "logs")]
    if vars_:
        cmd += ["--vars", json.dumps(vars_)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True)
