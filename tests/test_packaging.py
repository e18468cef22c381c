"""The package as a user installs it (issue 31, item 6): `pip wheel .` built a wheel without dbt_project/ or
dagster.yaml, and installed from it every command ended with DagsterDbtProjectNotFoundError.

The wheel is built as a release is: the repository's files, their source distribution (MANIFEST.in), then
`pip wheel .` in it (setup.py puts the dbt project and dagster.yaml in the wheel). It is installed, not
editable, into a new virtualenv with the exact versions of this one's dependencies, and its own `saas-metrics
run` refreshes a small account away from the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from saas_metrics.config import PROJECT_DIR
from saas_metrics.demo.account import generate
from saas_metrics.demo.server import StripeProtocolServer
from saas_metrics.demo.store import Store
from tests.conftest import query
from tests.support.cli import user_env

BIN = Path(sys.executable).parent
# what a checkout holds besides its files (when it is not a git clone)
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".saas-metrics", "target", "logs", "build", "*.egg-info", "__pycache__", ".*_cache"
)


def _source_files(dest: Path) -> Path:
    """The repository's files in `dest`: git's list (new files too), or without git the checkout less what
    runs leave in it."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=PROJECT_DIR, capture_output=True
    )
    if listed.returncode != 0:
        shutil.copytree(PROJECT_DIR, dest, ignore=NOT_SOURCE)
        return dest
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = PROJECT_DIR / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtualenv with the wheel installed (its bin folder)."""
    work = tmp_path_factory.mktemp("wheel")
    source = _source_files(work / "source")
    # the source distribution, then `pip wheel .` in it (with this environment's setuptools: no download)
    build_sdist = "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))"
    sdist = work / "dist" / _run(sys.executable, "-c", build_sdist, work / "dist", cwd=source).stdout.split()[-1]
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "unpacked", filter="data")
    (unpacked,) = (work / "unpacked").iterdir()
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        work / "dist",
        ".",
        cwd=unpacked,
    )
    (wheel,) = (work / "dist").glob("*.whl")
    shipped = zipfile.ZipFile(wheel).namelist()
    assert "saas_metrics/project/dagster.yaml" in shipped
    assert "saas_metrics/project/dbt_project/dbt_project.yml" in shipped
    assert "saas_metrics/project/dbt_project/models/marts/mrr/mrr_monthly.sql" in shipped
    assert not [name for name in shipped if "/target/" in name or "/logs/" in name]

    venv = work / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    # the dependencies at this environment's versions, from uv's cache when it has them all
    frozen = _run(BIN / "uv", "pip", "freeze", "--python", sys.executable, "--exclude-editable").stdout
    requirements = work / "requirements.txt"
    requirements.write_text(
        "".join(line + "\n" for line in frozen.splitlines() if not line.startswith(("pip==", "uv==")))
    )
    install = [BIN / "uv", "pip", "install", "--quiet", "--python", venv / "bin" / "python", "--no-deps"]
    install += ["-r", requirements, wheel]
    if subprocess.run([*install[:3], "--offline", *install[3:]], capture_output=True).returncode != 0:
        _run(*install)
    _run(BIN / "uv", "pip", "check", "--python", venv / "bin" / "python")  # the wheel's requirements are met
    return venv / "bin"


def test_the_installed_wheel_runs_a_refresh(installed, fresh_database, tmp_path):
    elsewhere = tmp_path / "elsewhere"  # not the checkout: nothing of it is on the path
    elsewhere.mkdir()
    env = {k: v for k, v in user_env(tmp_path / "home").items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = _run(
        installed / "python",
        "-c",
        "import saas_metrics.config as c; print(c.PROJECT_DIR, c.IS_CHECKOUT, c.load_settings().home)",
        cwd=elsewhere,
        env={**{k: v for k, v in env.items() if k != "SAAS_METRICS_HOME"}, "HOME": str(tmp_path)},
    ).stdout.split()
    site_packages = next((installed.parent / "lib").glob("python3*/site-packages"))
    # the wheel's own copy of the project; the home is the user's, not inside the installed package
    assert where == [str(site_packages / "saas_metrics" / "project"), "False", str(tmp_path / ".saas-metrics")]

    store = Store(tmp_path / "stripe.sqlite")
    now = int(time.time())
    generate(store, customers=12, months=3, seed=3, now=now, progress_every=10**9)
    url = fresh_database("wheel")
    with StripeProtocolServer(store, api_key="sk_test_wheel", now=now) as server:
        env.update(DATABASE_URL=url, STRIPE_API_KEY="sk_test_wheel", STRIPE_API_BASE=server.url, STRIPE_MAX_RPS="2000")
        result = subprocess.run(
            [installed / "saas-metrics", "run"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900
        )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Refresh finished in" in result.stdout
    assert query(url, "select count(*) from raw_stripe.customers") == [(12,)]
    assert query(url, "select count(*) > 0 from marts.mrr_monthly") == [(True,)]
    # Dagster kept the run in the warehouse (dagster.yaml from the wheel: storage in DAGSTER_PG_URL)
    assert query(url, "select count(*) from runs where status = 'SUCCESS'") == [(1,)]
    assert os.path.isfile(site_packages / "saas_metrics/project/dbt_project/target/manifest.json")
