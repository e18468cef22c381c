"""A refresh's marts change at once: the dbt marts together with the forecast and the churn predictions
computed from them (orchestration/defs/publish.py, macros/publish.sql).

Before, dbt published its marts at the end of its build and the Python assets replaced their tables after:
a refresh stopped in between left the marts new and the predictions old (scoring customers the marts show
as cancelled, missing new ones). Here a demo account is refreshed once; then a customer is added and the
refresh is stopped twice, once in the churn model (after the dbt build and the forecast) and once in the
publication itself (after every Python mart was written): each time every relation of schema `marts` must
be exactly as the first refresh left it. A last refresh publishes everything, and its predictions score
exactly the customers its marts show paying.
"""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest

from orchestration.defs import churn, publish
from saas_metrics import runtime
from saas_metrics.demo.account import generate
from saas_metrics.demo.billing import Account, Item
from saas_metrics.demo.server import StripeProtocolServer
from saas_metrics.demo.store import Store
from tests.conftest import query
from tests.support.pipeline import API_KEY
from tests.test_publish_marts import digests


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory):
    work = tmp_path_factory.mktemp("publish-refresh-demo")
    now = int(time.time())
    store = Store(work / "stripe.sqlite")
    generate(store, customers=80, months=14, seed=5, now=now, progress_every=10**9, events_dir=work / "events")
    return store, now


def _configure(monkeypatch, tmp_path: Path, url: str, api_base: str, events: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", api_base)
    monkeypatch.setenv("STRIPE_MAX_RPS", "2000")
    monkeypatch.setenv("SAAS_METRICS_EVENTS_DIR", str(events))
    monkeypatch.setenv("SAAS_METRICS_HOME", str(tmp_path / "home"))
    runtime.settings.cache_clear()
    runtime.prepare_environment()


def _refresh(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    from orchestration.definitions import defs

    return defs.resolve_job_def("refresh_job").execute_in_process(instance=instance, raise_on_error=False)


def _failed_steps(result: dg.ExecuteInProcessResult) -> list[str]:
    return sorted(e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE")


def test_a_stopped_refresh_publishes_nothing_and_a_good_one_the_marts_with_their_predictions(
    demo_store, fresh_database, monkeypatch, tmp_path
):
    store, now = demo_store
    url = fresh_database("publish_refresh")
    events = Path(store.path).parent / "events"
    with dg.DagsterInstance.ephemeral() as instance:
        with StripeProtocolServer(store, api_key=API_KEY, now=now) as server:
            _configure(monkeypatch, tmp_path, url, server.url, events)
            assert _refresh(instance).success
        first = digests(url)
        assert {"customer_mrr_current", "mrr_forecast", "churn_predictions", "churn_model_evaluations"} <= set(first)
        scored = query(url, "select count(*) from marts.churn_predictions")[0][0]
        assert scored > 0  # the account has enough history for a model: the predictions are not vacuous

        # then a new customer signs up at $300/month (now: before every later build's snapshot day and clock)
        later = int(time.time())
        account = Account(store, later, id_prefix="N")
        product = account.product("Late product", later, id="prod_late")
        price = account.price(product, 30000, later, id="price_late300")
        account.subscribe(account.customer(later, id="cus_late"), [Item(price)], later).finish()
        account.flush()
        with StripeProtocolServer(store, api_key=API_KEY, now=later + 3600) as server:
            _configure(monkeypatch, tmp_path, url, server.url, events)

            # stopped in the churn model: the dbt build and the forecast ran, nothing is published
            def stopped(*args, **kwargs):
                raise RuntimeError("stopped here")

            with monkeypatch.context() as patch:
                patch.setattr(churn, "write_churn_model", stopped)
                result = _refresh(instance)
            assert not result.success
            assert _failed_steps(result) == ["churn_model"]
            assert digests(url) == first
            assert query(url, "select count(*) from marts.customer_mrr_current where customer_id = 'cus_late'") == [
                (0,)
            ]
            # while the build it stopped after has the new customer
            assert query(
                url, "select count(*) from marts_build.customer_mrr_current where customer_id = 'cus_late'"
            ) == [(1,)]

            # stopped in the publication, every Python mart written: still nothing published
            with monkeypatch.context() as patch:
                patch.setattr(publish, "publish_refresh", stopped)
                result = _refresh(instance)
            assert not result.success
            assert _failed_steps(result) == ["ops__marts_publication"]
            assert digests(url) == first

            # a good refresh publishes it all, at once
            assert _refresh(instance).success
            after = digests(url)
            assert after["customer_mrr_current"] != first["customer_mrr_current"]
            assert query(url, "select mrr from marts.customer_mrr_current where customer_id = 'cus_late'") == [(300,)]
            # the predictions score exactly the customers the published marts show paying, on their snapshot day
            assert (
                query(
                    url,
                    "select customer_id from marts.churn_predictions"
                    " except select customer_id from marts.customer_mrr_current where is_paying",
                )
                == []
            )
            assert (
                query(
                    url,
                    "select customer_id from marts.customer_mrr_current where is_paying"
                    " except select customer_id from marts.churn_predictions",
                )
                == []
            )
            assert query(url, "select count(*) from marts.churn_predictions where customer_id = 'cus_late'") == [(1,)]
            assert query(
                url,
                "select count(*) from marts.churn_predictions where scoring_date <>"
                " (select max(snapshot_date) from marts.customer_mrr_monthly)",
            ) == [(0,)]
            # nothing waits to be published, and marts_build keeps no copy of the Python marts
            assert query(url, "select count(*) from ops.marts_pending_publish") == [(0,)]
            assert query(
                url,
                "select count(*) from information_schema.tables where table_schema = 'marts_build'"
                " and table_name in ('mrr_forecast', 'mrr_forecast_backtest', 'churn_predictions',"
                " 'churn_model_evaluations')",
            ) == [(0,)]
