"""Talking to the cluster: what dbt's Spark target needs in its environment, and a small client for the rest
(registering the lake's events table, reading the rollups to publish). One endpoint, LakeSettings.client_url:
Spark Connect (`sc://`, through pyspark's client: results come back as Arrow) or a Thrift server
(`thrift://`, through PyHive, as dbt-spark's `thrift` method)."""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

from saas_metrics.lake.settings import EVENTS_DATASET, LakeSettings

# pyspark's Connect client warns on every session about a static setting dbt-spark asks for (the server has
# it already) and about pandas 3; neither is actionable here
QUIET_WARNINGS = "ignore:Failed to set spark.sql.catalogImplementation,ignore:PySpark does not yet fully support pandas"

# the lake's events as dlt writes them (ingestion/product/lake.py); event_date is the partition column
EVENT_COLUMNS = (
    ("event_id", "string"),
    ("account_id", "string"),
    ("user_id", "string"),
    ("event_name", "string"),
    ("properties", "string"),
    ("occurred_at", "timestamp"),
    ("_dlt_load_id", "string"),
    ("_dlt_id", "string"),
)


class SparkUnavailable(Exception):
    """The cluster does not answer; the message is one line naming SAAS_METRICS_SPARK_URL."""


def unreachable_message(lake: LakeSettings, detail: str) -> str:
    where = lake.client_url
    if lake.runs_local_driver:
        fix = "start it with `saas-metrics lake start`, or point SAAS_METRICS_SPARK_URL at your cluster"
    else:
        fix = "check that cluster, or fix SAAS_METRICS_SPARK_URL"
    return f"SAAS_METRICS_SPARK_URL: no Spark answers at {where} ({detail}): {fix}"


def check_reachable(lake: LakeSettings, timeout: float = 3.0) -> None:
    """A TCP connection to the cluster's endpoint, within `timeout` seconds, or SparkUnavailable."""
    host, port = lake.endpoint
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except TimeoutError:
        detail = f"no answer within {timeout:.0f} s"
    except OSError as exc:
        detail = "connection refused" if isinstance(exc, ConnectionRefusedError) else (exc.strerror or str(exc))
    raise SparkUnavailable(unreachable_message(lake, detail))


def dbt_environment(lake: LakeSettings) -> dict[str, str]:
    """The variables dbt_project/profiles.yml's `spark` target reads (and pyspark, under dbt-spark's session
    method), for the cluster of `lake`."""
    host, port = lake.endpoint
    if lake.client_url.startswith("thrift://"):
        return {"SAAS_METRICS_SPARK_METHOD": "thrift", "SAAS_METRICS_SPARK_HOST": host,
                "SAAS_METRICS_SPARK_PORT_DBT": str(port)}  # fmt: skip
    return {
        "SAAS_METRICS_SPARK_METHOD": "session",
        "SPARK_REMOTE": lake.client_url,
        "PYTHONWARNINGS": QUIET_WARNINGS,
    }


class SparkClient:
    """SQL on the cluster: statements, and queries whose result comes back as an Arrow table."""

    def __init__(self, lake: LakeSettings):
        self.lake = lake
        self._session = None
        self._hive = None
        if lake.client_url.startswith("thrift://"):
            from pyhive import hive

            host, port = lake.endpoint
            self._hive = hive.connect(host=host, port=port)
        else:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
                from pyspark.sql import SparkSession

                self._session = SparkSession.builder.remote(lake.client_url).getOrCreate()
            self._session.conf.set("spark.sql.session.timeZone", "UTC")

    def execute(self, statement: str) -> None:
        if self._session is not None:
            self._session.sql(statement).collect()
        else:
            with self._hive.cursor() as cursor:
                cursor.execute(statement)

    def arrow(self, query: str) -> pa.Table:
        if self._session is not None:
            return self._session.sql(query).toArrow()
        with self._hive.cursor() as cursor:
            cursor.execute(query)
            names = [column[0].split(".")[-1] for column in cursor.description]
            rows = cursor.fetchall()
        return pa.table({name: [row[i] for row in rows] for i, name in enumerate(names)})

    def close(self) -> None:
        if self._session is not None:
            self._session.stop()
        if self._hive is not None:
            self._hive.close()


@contextmanager
def client(lake: LakeSettings) -> Iterator[SparkClient]:
    """A SparkClient for the cluster of `lake`, after checking that it answers (SparkUnavailable if not)."""
    check_reachable(lake)
    os.environ.pop("SPARK_REMOTE", None)  # the client names its endpoint itself
    spark = SparkClient(lake)
    try:
        yield spark
    finally:
        spark.close()


def register_events(spark: SparkClient, lake: LakeSettings) -> None:
    """The lake's events as the table the dbt source names (raw_product.events), with every event_date
    partition the loads added. Parquet: the files under the folder (the loader never rewrites one); Delta:
    the table through its transaction log (needs Delta's jars on the cluster)."""
    table = f"{EVENTS_DATASET}.events"
    spark.execute(f"create database if not exists {EVENTS_DATASET}")
    if lake.format == "delta":
        spark.execute(f"create table if not exists {table} using delta location '{lake.events_path}'")
        return
    columns = ", ".join(f"{name} {kind}" for name, kind in EVENT_COLUMNS)
    spark.execute(
        f"create table if not exists {table} ({columns}, event_date date) using parquet "
        f"partitioned by (event_date) location '{lake.events_path}'"
    )
    if not client_tracks_partitions(spark):
        return
    spark.execute(f"msck repair table {table}")


def client_tracks_partitions(spark: SparkClient) -> bool:
    """Whether the cluster keeps partitions in its metastore (Spark's default; the local cluster does not,
    and finds them in the folders at each query)."""
    try:
        value = spark.arrow("set spark.sql.hive.manageFilesourcePartitions").column("value")[0].as_py()
    except Exception:
        return True
    return str(value).lower() != "false"
