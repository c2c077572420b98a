"""The ESL pipeline through PgBouncer in transaction mode (issue 14): DATABASE_POOLER=transaction turns
off server-side prepared statements, LISTEN goes over DATABASE_DIRECT_URL, or the worker polls.

A representative subset, always through PgBouncer; the whole ESL suite runs through it with
``TEST_DATABASE_POOLER=pgbouncer`` (.ci/run).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from storeflow.db.connect import Database
from storeflow.db.pool import PoolConfig
from storeflow.esl.worker import run_worker
from storeflow.sandbox.shopify import shopify_dumps
from storeflow.settings import Settings

from ..pgbouncer import Bouncer
from .conftest import Esl, _esl
from .test_db_outage import BackgroundWorker
from .test_webhooks import BIG, product

pytestmark = pytest.mark.integration


def item(n: int, price: str = "19.90") -> bytes:
    """A products/create body of product ``n``, with its own label code."""
    pid = BIG + 1000 * n
    variant = {"id": pid + 100, "title": "Default Title", "price": price, "sku": f"PGB-{n}", "barcode": f"PGB-{n}"}
    return shopify_dumps(product(pid=pid, variants=[{**variant, "inventory_item_id": pid + 200}]))


def wait_for_labels(esl: Esl, codes: set[str], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not codes <= set(esl.labels()):
        assert time.monotonic() < deadline, f"labels {sorted(codes - set(esl.labels()))} never arrived"
        time.sleep(0.05)


@pytest.fixture
def esl_polling(pgbouncer: Bouncer, db_url: str, make_settings: Callable[..., Settings], sandbox: Any) -> Iterator[Esl]:
    """Through PgBouncer with no DATABASE_DIRECT_URL: nowhere to LISTEN, the worker polls."""
    yield from _esl(db_url, make_settings, sandbox, pgbouncer, DATABASE_DIRECT_URL="")


def test_prepared_statements_break_behind_pgbouncer_unless_the_pooler_setting_is_on(
    pgbouncer: Bouncer, db_url: str
) -> None:
    pooled = pgbouncer.url(db_url)

    def repeat(pooler: str) -> None:
        db = Database(pooled, kind="test", pool_config=PoolConfig(pooler=pooler))
        conns = [db.connect(autocommit=True) for _ in range(3)]
        try:
            for n in range(20):  # past psycopg's prepare_threshold (5) on every connection
                for conn in conns:
                    assert conn.execute("SELECT %s::int AS n", (n,)).fetchone() == {"n": n}
        finally:
            for conn in conns:
                conn.close()

    with pytest.raises(psycopg.errors.DuplicatePreparedStatement):
        repeat("none")  # the control: without the setting, transaction pooling breaks psycopg's prepares
    repeat("transaction")


def test_webhooks_reach_the_labels_through_pgbouncer(esl_pgbouncer: Esl) -> None:
    esl = esl_pgbouncer
    assert esl.worker_db_url != esl.db_url and esl.settings.DATABASE_POOLER == "transaction"
    esl.add_mapping()
    for n in range(12):  # the same ingest statement, many times over the pooled connections
        assert esl.post("products/create", item(n, price=f"{n}.50")).status_code == 200
    stats = esl.drain()
    assert stats.results["succeeded"] == 12
    labels = esl.labels()
    assert len(labels) == 12 and {p["pp"] for p in labels.values()} == {f"{n}.50" for n in range(12)}
    with esl.connect() as conn:
        states = conn.execute("SELECT state, count(*) AS n FROM sync_queue GROUP BY 1").fetchall()
    assert states == [{"state": "succeeded", "n": 12}]


def test_an_idle_worker_is_woken_over_the_direct_url(esl_pgbouncer: Esl) -> None:
    esl = esl_pgbouncer
    esl.add_mapping()
    # an hour between polls: only the NOTIFY the receiver sends (through PgBouncer) can wake it
    with BackgroundWorker(esl, poll_interval=3600.0):
        with esl.connect() as conn:  # the worker's LISTEN session is on the server itself
            deadline = time.monotonic() + 30
            while not conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN esl_sync'"
            ).fetchone():
                assert time.monotonic() < deadline, "the worker never listened"
                time.sleep(0.05)
        time.sleep(0.5)  # the worker has drained (nothing queued) and sleeps
        assert esl.post("products/create", item(5)).status_code == 200
        codes = esl_codes(esl)
        assert codes
        wait_for_labels(esl, codes)


def esl_codes(esl: Esl) -> set[str]:
    with esl.connect() as conn:
        return {r["pc"] for r in conn.execute("SELECT pc FROM products").fetchall()}


def test_without_a_direct_url_the_worker_polls(esl_polling: Esl) -> None:
    esl = esl_polling
    assert esl.settings.DATABASE_DIRECT_URL is None or not esl.settings.DATABASE_DIRECT_URL.get_secret_value()
    esl.add_mapping()
    with BackgroundWorker(esl, poll_interval=0.2):
        assert esl.post("products/create", item(7)).status_code == 200
        codes = esl_codes(esl)
        assert codes
        wait_for_labels(esl, codes)
        with esl.connect() as conn:
            listening = conn.execute(
                "SELECT count(*) AS n FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
            )
            assert listening.fetchone() == {"n": 0}


def test_drain_through_pgbouncer_with_two_lanes(esl_pgbouncer: Esl) -> None:
    esl = esl_pgbouncer
    esl.add_mapping()
    for n in range(30):
        assert esl.post("products/create", item(n)).status_code == 200
    config = esl.worker_config(concurrency=2, batch_size=5)
    assert config.db.pooler == "transaction"
    secret = esl.settings.HIPOINK_API_SECRET.get_secret_value()
    stats = asyncio.run(run_worker(esl.worker_db_url, config, esl.hipoink_url, "default", secret, drain=True))
    assert stats.results["succeeded"] == 30 and len(esl.labels()) == 30
