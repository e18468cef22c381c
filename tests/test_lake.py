"""Lake mode on a real Spark cluster (README "Lake mode"): a standalone master, one worker and a Spark Connect
server started from the pyspark wheel, as `saas-metrics lake start` starts them.

~100k product events are loaded twice by the same source: into PostgreSQL (the default) and through the lake
(dlt's filesystem destination). The rollups built on Spark and published into PostgreSQL must equal the ones
PostgreSQL builds, row for row; after late and re-delivered events, each engine's incremental build must equal
its own full rebuild, and the two engines each other again.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import socket
from pathlib import Path

import dagster as dg
import dlt
import pytest

pytest.importorskip("pyspark", reason="lake mode's packages (pip install 'saas-metrics[lake]'; make test has them)")

from ingestion.product import TABLES, product_source  # noqa: E402
from ingestion.product.lake import ensure_events_table, lake_events, lake_pipeline  # noqa: E402
from ingestion.raw_tables import ensure_tables  # noqa: E402
from saas_metrics.dbt_cli import run_dbt  # noqa: E402
from saas_metrics.lake import spark  # noqa: E402
from saas_metrics.lake.cluster import LocalCluster  # noqa: E402
from saas_metrics.lake.publish import ROLLUPS, publish_rollups  # noqa: E402
from saas_metrics.lake.settings import LakeSettings  # noqa: E402
from tests.conftest import query  # noqa: E402

pytestmark = pytest.mark.lake

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAYS = 60
EVENTS = 100_000
NAMES = ["login", "dashboard_viewed", "report_created", "export_downloaded", "comment_added", "invite_sent",
         "integration_connected", "page_viewed"]  # fmt: skip


def free_port_block(size: int) -> int:
    """The first of `size` consecutive free ports on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + size >= 65000:
            continue
        sockets = []
        try:
            for port in range(base, base + size):
                sock = socket.socket()
                sock.bind(("127.0.0.1", port))
                sockets.append(sock)
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError("no block of free ports")


def generated_events(n: int, first: int = 0, seed: int = 7) -> list[dict]:
    """`n` events of 40 accounts of up to 6 users over DAYS days; a sixth of the users are admins."""
    rng = random.Random(seed)
    rows = []
    for i in range(first, first + n):
        account = rng.randrange(40)
        user = rng.randrange(6)
        at = START + dt.timedelta(seconds=rng.randrange(DAYS * 86400))
        rows.append(
            {
                "event_id": f"evt_{i}",
                "account_id": f"acct_{account:03d}",
                "user_id": None if rng.random() < 0.02 else f"u{account}_{user}",
                "event_name": rng.choice(NAMES),
                "properties": {"role": "admin" if user == 0 else "member", "n": i % 5},
                "timestamp": at.isoformat(),
            }
        )
    return rows


def write_ndjson(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """The local cluster (one worker), running for the module."""
    home = tmp_path_factory.mktemp("lake-home")
    settings = LakeSettings(url=str(home / "lake"), base_port=free_port_block(20), workers=1, worker_memory="1g")
    cluster = LocalCluster(settings, home / "cluster")
    try:
        cluster.start(on_message=lambda message: None)
        yield settings
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def engines(lake, fresh_database, tmp_path_factory):
    """The same events loaded into PostgreSQL (database `pg`) and into the lake; the rollups built by each
    engine, Spark's published into database `published`."""
    work = tmp_path_factory.mktemp("lake-work")
    events_dir = work / "events"
    events_dir.mkdir()
    rows = generated_events(EVENTS)
    write_ndjson(events_dir / "history.ndjson", rows)
    state = {"work": work, "events_dir": events_dir, "pg": fresh_database("lake_pg"),
             "published": fresh_database("lake_pub"), "lake": lake}  # fmt: skip
    load_both(state)
    build_pg(state)
    build_spark(state)
    return state


def load_both(state: dict) -> None:
    source = product_source(events_dir=str(state["events_dir"]))
    dlt.pipeline(
        "product_pg",
        destination=dlt.destinations.postgres(state["pg"]),
        dataset_name="raw_product",
        pipelines_dir=str(state["work"] / "dlt"),
    ).run(source.with_resources("event_files"))
    ensure_tables(state["pg"], TABLES)
    lake: LakeSettings = state["lake"]
    pipeline = lake_pipeline(lake.dlt_bucket_url, str(state["work"] / "dlt"))
    pipeline.run(lake_events(product_source(events_dir=str(state["events_dir"]))))
    ensure_events_table(lake.dlt_bucket_url)


def build_pg(state: dict, full_refresh: bool = False) -> None:
    args = ["build", "--select", "tag:spark"] + (["--full-refresh"] if full_refresh else [])
    result = run_dbt(args, state["pg"], state["work"] / "pg_target")
    assert result.returncode == 0, result.stdout[-3000:]


def build_spark(state: dict, full_refresh: bool = False) -> str:
    lake: LakeSettings = state["lake"]
    with spark.client(lake) as client:
        spark.register_events(client, lake)
    env = spark.dbt_environment(lake)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        args = ["build", "--target", "spark"] + (["--full-refresh"] if full_refresh else [])
        result = run_dbt(args, target_path=state["work"] / "spark_target")
    assert result.returncode == 0, result.stdout[-3000:]
    with spark.client(lake) as client:
        publish_rollups(client, state["published"], full=full_refresh, on_message=lambda message: None)
    return result.stdout


def rollup(url: str, table: str) -> list[tuple]:
    """A rollup's rows, sorted, without max_load_id (each engine's own loads' ids)."""
    names = [name for name, _ in ROLLUPS[table] if name != "max_load_id"]
    return query(url, f"select {', '.join(names)} from intermediate.{table} order by {', '.join(names)}")


def column_types(url: str, table: str) -> list[tuple]:
    return query(
        url,
        "select column_name, data_type from information_schema.columns "
        "where table_schema = 'intermediate' and table_name = %s order by column_name",
        (table,),
    )


def test_spark_rollups_equal_postgres_row_for_row(engines):
    pg, published = engines["pg"], engines["published"]
    user_days = rollup(pg, "int_product_user_days")
    assert sum(row[3] for row in user_days) == EVENTS  # every event counted once
    assert len(user_days) > 10_000
    for table in ROLLUPS:
        assert rollup(published, table) == rollup(pg, table), table
        assert column_types(published, table) == column_types(pg, table), table
    # the partitions: one folder per UTC day in the lake
    days = {p.name for p in Path(engines["lake"].url, "raw_product", "events").iterdir() if p.is_dir()}
    assert len({d for d in days if d.startswith("event_date=")}) == DAYS


def test_late_and_duplicate_events_incremental_equals_full_rebuild_on_both_engines(engines):
    pg, published, events_dir = engines["pg"], engines["published"], engines["events_dir"]
    history = generated_events(EVENTS)
    late = generated_events(300, first=EVENTS, seed=11)  # new events, on days long built
    redelivered = history[:500]  # delivered again in a new file
    # a new event twice in one file: the lake writes both (insert-only merges match what is already there)
    twice = generated_events(1, first=EVENTS + 1000, seed=13)
    write_ndjson(events_dir / "late.ndjson", late + redelivered + twice + twice)
    load_both(engines)
    assert query(pg, "select count(*) from raw_product.events") == [(EVENTS + 301,)]
    stdout = build_spark(engines)
    # the lake's loads touched the days of the new events (the re-delivered ones were there already)
    touched = {event["timestamp"][:10] for event in late + twice}
    assert f"int_product_user_days: {len(touched)} day(s) touched" in stdout
    build_pg(engines)
    incremental = {table: (rollup(pg, table), rollup(published, table)) for table in ROLLUPS}
    assert sum(row[3] for row in incremental["int_product_user_days"][1]) == EVENTS + 301
    for table, (from_pg, from_spark) in incremental.items():
        assert from_spark == from_pg, table
    build_pg(engines, full_refresh=True)
    build_spark(engines, full_refresh=True)
    for table, (from_pg, from_spark) in incremental.items():
        assert rollup(pg, table) == from_pg, f"{table}: PostgreSQL's incremental build differs from a rebuild"
        assert rollup(published, table) == from_spark, f"{table}: Spark's incremental build differs from a rebuild"


def test_a_cluster_that_is_down_is_one_line_naming_the_setting():
    down = LakeSettings(url="/tmp/lake", base_port=free_port_block(20))
    with pytest.raises(spark.SparkUnavailable) as raised:
        spark.check_reachable(down)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"SAAS_METRICS_SPARK_URL: no Spark answers at sc://127.0.0.1:{down.base_port + 2}")
    assert "saas-metrics lake start" in message


def test_lake_mode_is_one_graph_events_spark_publish_postgres():
    """In lake mode the refresh runs the lake load, the Spark build (its dbt tests as checks), the publish (with
    its check) and the PostgreSQL build, in that order of dependencies."""
    from orchestration.definitions import build_definitions

    repo = build_definitions(lake_mode=True).get_repository_def()
    graph = repo.asset_graph
    staging = graph.get(dg.AssetKey(["lake", "staging", "stg_product__events"]))
    assert staging.group_name == "lake"
    assert dg.AssetKey(["product", "events"]) in staging.parent_keys
    for name in ROLLUPS:
        built = dg.AssetKey(["lake", "intermediate", name])
        assert graph.get(built).parent_keys == {staging.key}
        published = graph.get(dg.AssetKey(["intermediate", name]))
        assert published.parent_keys == {built} and published.group_name == "product"
    accounts = graph.get(dg.AssetKey(["intermediate", "int_product_accounts"]))
    assert dg.AssetKey(["intermediate", "int_product_user_days"]) in accounts.parent_keys
    # the models Spark builds are not built by PostgreSQL too
    assert not graph.has(dg.AssetKey(["staging", "stg_product__events"]))
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert ("intermediate/int_product_user_days", "rows_equal_spark") in checks
    assert (
        "lake/intermediate/int_product_user_days",
        "unique_combination_of_columns_int_product_user_days_account_id__user_id__activity_date",
    ) in checks
    refresh = repo.get_job("refresh_job")
    ops = {node.name for node in refresh.graph.node_defs}
    assert {"product", "lake_dbt_models", "publish_product_rollups", "dbt_models"} <= ops
