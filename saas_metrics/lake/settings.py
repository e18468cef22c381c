"""Lake mode's settings (README "Lake mode"), parsed from the environment that saas_metrics.config reads.

Off unless SAAS_METRICS_LAKE_URL names where product events land. Then:
- SAAS_METRICS_LAKE_URL: a folder, or an s3://, gs:// or az:// (abfss://) path: dlt's filesystem destination
  writes the events there, and the cluster reads them from there.
- SAAS_METRICS_SPARK_URL: the cluster. `sc://host:port` is a Spark Connect server, `thrift://host:port` a
  Spark Thrift server, `spark://host:port` a standalone master (`saas-metrics lake start` then runs the
  driver, a Spark Connect server, on this machine). Unset: the local cluster `saas-metrics lake start` runs.
- SAAS_METRICS_LAKE_FORMAT: `parquet` (default) or `delta`: how Spark reads the events (Delta needs Delta's
  jars on the cluster).
- The local cluster: SAAS_METRICS_SPARK_PORT (the first of its ports, default 7077), SAAS_METRICS_LAKE_WORKERS
  (default 2), SAAS_METRICS_LAKE_WORKER_MEMORY (default 2g), SAAS_METRICS_SPARK_DRIVER_HOST (default 127.0.0.1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

FORMATS = ("parquet", "delta")
CLOUD_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")
DEFAULT_BASE_PORT = 7077
EVENTS_DATASET = "raw_product"  # dlt's dataset: the lake's folder and Spark's database, as in PostgreSQL


class LakeConfigError(ValueError):
    """A lake setting a user can fix; the message names it."""


@dataclass(frozen=True)
class LakeSettings:
    url: str | None = None  # where events land: an absolute folder or a cloud path; None: lake mode off
    spark_url: str | None = None  # None: the local cluster's Spark Connect server
    format: str = "parquet"
    base_port: int = DEFAULT_BASE_PORT
    workers: int = 2
    worker_memory: str = "2g"
    driver_host: str = "127.0.0.1"

    @property
    def enabled(self) -> bool:
        return self.url is not None

    @property
    def is_local_folder(self) -> bool:
        return self.url is not None and urlparse(self.url).scheme not in CLOUD_SCHEMES

    @property
    def dlt_bucket_url(self) -> str:
        """The lake as dlt's filesystem destination takes it."""
        assert self.url is not None
        return f"file://{self.url}" if self.is_local_folder else self.url

    def spark_path(self, *parts: str) -> str:
        """A path in the lake as Spark (Hadoop's file systems) names it: s3:// is s3a:// there."""
        assert self.url is not None
        base = f"file:{self.url}" if self.is_local_folder else re.sub(r"^s3://", "s3a://", self.url)
        return "/".join([base.rstrip("/"), *parts])

    @property
    def events_path(self) -> str:
        """The events table in the lake, as Spark names it (dlt writes <lake>/raw_product/events)."""
        return self.spark_path(EVENTS_DATASET, "events")

    @property
    def warehouse_path(self) -> str:
        """Where the local cluster keeps the tables dbt builds (managed tables: a full rebuild drops them)."""
        return self.spark_path("warehouse")

    # the local cluster's ports, all from base_port: master, its web UI (status), Spark Connect, the driver's
    # RPC and block manager (the executors' block managers take the next free ones), each worker's port and UI
    @property
    def ports(self) -> dict[str, int]:
        base = self.base_port
        ports = {
            "master": base,
            "master_ui": base + 1,
            "connect": base + 2,
            "driver": base + 3,
            "block_manager": base + 4,
        }
        for i in range(self.workers):
            ports[f"worker{i + 1}"] = base + 10 + 2 * i
            ports[f"worker{i + 1}_ui"] = base + 11 + 2 * i
        return ports

    @property
    def master_url(self) -> str:
        """The standalone master the driver attaches to: the user's spark:// or the local one."""
        if self.spark_url and self.spark_url.startswith("spark://"):
            return self.spark_url
        return f"spark://127.0.0.1:{self.base_port}"

    @property
    def runs_local_master(self) -> bool:
        """`lake start` runs a master and workers here (not when SAAS_METRICS_SPARK_URL names a spark:// master)."""
        return self.spark_url is None

    @property
    def runs_local_driver(self) -> bool:
        """`lake start` runs the driver (a Spark Connect server) here: for the local cluster and a spark:// master."""
        return self.spark_url is None or self.spark_url.startswith("spark://")

    @property
    def client_url(self) -> str:
        """What saas-metrics and dbt connect to: a Spark Connect (sc://) or Thrift (thrift://) address."""
        if self.runs_local_driver:
            return f"sc://127.0.0.1:{self.ports['connect']}"
        assert self.spark_url is not None
        return self.spark_url

    @property
    def endpoint(self) -> tuple[str, int]:
        """(host, port) of client_url."""
        parsed = urlparse(self.client_url)
        return parsed.hostname or "127.0.0.1", parsed.port or (15002 if parsed.scheme == "sc" else 10000)


def lake_settings(env: Mapping[str, str]) -> LakeSettings:
    """Lake mode's settings from `env` (a relative lake folder is from the current directory)."""
    raw_url = env.get("SAAS_METRICS_LAKE_URL") or None
    url = None
    if raw_url:
        scheme = urlparse(raw_url).scheme
        if scheme in CLOUD_SCHEMES:
            url = raw_url.rstrip("/")
        elif scheme in ("", "file"):
            url = str(Path(raw_url.removeprefix("file://")).expanduser().resolve())
        else:
            raise LakeConfigError(
                f"SAAS_METRICS_LAKE_URL must be a folder or an s3://, gs:// or az:// path, got {raw_url!r}"
            )
    spark_url = env.get("SAAS_METRICS_SPARK_URL") or None
    if spark_url is not None:
        parsed = urlparse(spark_url)
        if parsed.scheme not in ("sc", "thrift", "spark") or not parsed.hostname:
            raise LakeConfigError(
                "SAAS_METRICS_SPARK_URL must be sc://host:port (Spark Connect), thrift://host:port (Thrift server) "
                f"or spark://host:port (standalone master), got {spark_url!r}"
            )
        try:
            parsed.port  # noqa: B018 (a bad port raises)
        except ValueError:
            raise LakeConfigError(f"SAAS_METRICS_SPARK_URL has an invalid port: {spark_url!r}") from None
    lake_format = (env.get("SAAS_METRICS_LAKE_FORMAT") or "parquet").lower()
    if lake_format not in FORMATS:
        raise LakeConfigError(f"SAAS_METRICS_LAKE_FORMAT must be parquet or delta, got {lake_format!r}")
    memory = env.get("SAAS_METRICS_LAKE_WORKER_MEMORY") or "2g"
    if not re.fullmatch(r"\d+[mMgG]", memory):
        raise LakeConfigError(f"SAAS_METRICS_LAKE_WORKER_MEMORY must be like 2g or 1536m, got {memory!r}")
    return LakeSettings(
        url=url,
        spark_url=spark_url,
        format=lake_format,
        base_port=_whole(env, "SAAS_METRICS_SPARK_PORT", DEFAULT_BASE_PORT, 1024, 65500),
        workers=_whole(env, "SAAS_METRICS_LAKE_WORKERS", 2, 1, 16),
        worker_memory=memory.lower(),
        driver_host=env.get("SAAS_METRICS_SPARK_DRIVER_HOST") or "127.0.0.1",
    )


def _whole(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise LakeConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise LakeConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value
