"""Issue 11, defects 1 and 4: the receiver and the worker through a PostgreSQL restart.

The server is a private embedded PostgreSQL (tests/integration/pgserver.py), stopped with
``pg_ctl -m fast`` and started again, never the shared one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from storeflow.db.connect import Database
from storeflow.db.pool import PoolConfig
from storeflow.esl.worker import run_worker
from storeflow.sandbox.hipoink import HipoinkSimulator
from storeflow.sandbox.host import SandboxHost
from storeflow.sandbox.shopify import shopify_dumps
from storeflow.settings import Settings
from storeflow.web.server import serve_in_thread

from ..pgserver import PrivateServer, private_server
from .conftest import Esl
from .test_webhooks import BIG, product, rows

pytestmark = pytest.mark.integration
SHOPIFY_TIMEOUT = 5.0  # Shopify gives up on a delivery after 5 s


@pytest.fixture
def outage(
    make_settings: Callable[..., Settings], sandbox: Callable[..., SandboxHost]
) -> Iterator[tuple[Esl, PrivateServer]]:
    from storeflow.web.app import create_app

    host = sandbox("hipoink", seed=11)
    sim = host.sim("hipoink")
    assert isinstance(sim, HipoinkSimulator)
    env = sim.client_config(host.urls["hipoink"]).env
    with private_server() as pg:
        settings = make_settings(
            db_url=pg.url,
            **env,
            APP_ENVIRONMENT="test",
            SYNC_WORKER_INTERVAL_SECONDS="0.5",
            RETRY_INITIAL_DELAY_SECONDS="0.05",
            HIPOINK_RATE_LIMIT_PER_SECOND="1000",
        )
        db = Database(pg.url, kind="test", pool_config=PoolConfig.from_settings(settings))
        with serve_in_thread(create_app(settings, db), "esl outage app") as url:
            yield Esl(settings, pg.url, url, host.urls["hipoink"], sim, env["SHOPIFY_WEBHOOK_SECRET"]), pg
        db.close()


class BackgroundWorker:
    """A worker on its own event loop in a thread, stopped at the end (on the URL the app uses:
    through PgBouncer when the test's ``esl`` goes through one)."""

    def __init__(self, esl: Esl, **overrides: Any) -> None:
        self.stop = asyncio.Event()
        self.loop = asyncio.new_event_loop()
        config = esl.worker_config(**overrides)
        secret = esl.settings.HIPOINK_API_SECRET.get_secret_value()
        work = run_worker(esl.worker_db_url, config, esl.hipoink_url, "default", secret, stop=self.stop)
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(work,), daemon=True)

    def __enter__(self) -> BackgroundWorker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(15)
        self.loop.close()


def wait_for(check: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except Exception:  # the database is still coming back
            pass
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@contextmanager
def restart_with_a_batch_in_flight(
    esl: Esl, pg: PrivateServer, products: int, latency_ms: int, lease: float, down: float
) -> Iterator[set[str]]:
    """A worker claims every product, Hipoink answers after ``latency_ms`` while PostgreSQL is down
    for ``down`` seconds; yields the label codes, with the worker still running, once nothing is in
    progress any more."""
    esl.add_mapping()
    for k in range(products):
        assert esl.post("products/create", mug(k, "10.00", "2030-01-01T00:00:00Z")).status_code == 200
    esl.fault(latency_ms=latency_ms, count=1, path="/product/")
    with BackgroundWorker(esl, lease_seconds=lease, poll_interval=0.2):
        wait_for(lambda: bool(rows(esl, "SELECT 1 FROM sync_queue WHERE state = 'in_progress'")), "never claimed")
        pg.stop()
        time.sleep(down)
        pg.start()
        wait_for(
            lambda: rows(esl, "SELECT DISTINCT state FROM sync_queue") == [{"state": "succeeded"}],
            "the batch stayed in progress after the restart",
        )
        yield {f"2000000000{k:03d}" for k in range(products)}


def test_restart_during_a_batch_in_flight_records_it_and_later_changes_still_reach_the_labels(
    outage: tuple[Esl, PrivateServer],
) -> None:
    esl, pg = outage
    # Hipoink receives the batch while the database is down, for less than the lease
    with restart_with_a_batch_in_flight(esl, pg, products=5, latency_ms=1500, lease=4.0, down=1.0) as codes:
        labels = esl.labels()
        assert set(labels) == codes
        assert {p["updates"] for p in labels.values()} == {1}  # recorded as sent, not sent again
        logged = rows(esl, "SELECT queue_item_id, status FROM sync_log WHERE queue_item_id IS NOT NULL")
        assert sorted(r["status"] for r in logged) == ["succeeded"] * 5  # one row per item, once

        # the symptom: a later price change of one of these products must reach its label
        assert esl.post("products/update", mug(3, "77.70", "2030-01-01T00:05:00Z")).status_code == 200
        wait_for(lambda: esl.labels()["2000000000003"]["pp"] == "77.70", "the new price never reached the label")


def test_outage_longer_than_the_lease_hands_the_batch_back_and_it_is_sent_again(
    outage: tuple[Esl, PrivateServer],
) -> None:
    esl, pg = outage
    # the database is back only after the lease has passed: the worker must let go of the batch
    with restart_with_a_batch_in_flight(esl, pg, products=3, latency_ms=1000, lease=2.0, down=3.5) as codes:
        labels = esl.labels()
    assert set(labels) == codes
    assert {p["updates"] for p in labels.values()} == {2}  # sent again, which Hipoink takes as an update
    statuses = rows(esl, "SELECT status, count(*) AS n FROM sync_log GROUP BY 1 ORDER BY 1")
    assert statuses == [{"status": "lease_expired", "n": 3}, {"status": "succeeded", "n": 3}]


def mug(k: int, price: str, updated_at: str) -> bytes:
    variant = {
        "id": BIG + k * 1000 + 100,
        "title": "Default Title",
        "price": price,
        "sku": f"MUG-{k}",
        "barcode": f"2000000000{k:03d}",
        "inventory_item_id": BIG + k * 1000 + 200,
    }
    return shopify_dumps(product(pid=BIG + k * 1000, updated_at=updated_at, variants=[variant]))


def test_receiver_answers_503_quickly_during_an_outage_and_recovers_after_it(
    outage: tuple[Esl, PrivateServer],
) -> None:
    esl, pg = outage
    esl.add_mapping()
    body = shopify_dumps(product())
    assert esl.post("products/create", body).status_code == 200  # the pool holds connections now

    # a quiet receiver through a restart: its pooled connections are dead, and none is handed out
    pg.stop()
    pg.start()
    first = esl.post("products/update", shopify_dumps(product(price="2.00", updated_at="2030-01-01T00:00:00Z")))
    assert first.status_code == 200, first.text

    pg.stop()
    try:
        with httpx.Client(timeout=SHOPIFY_TIMEOUT) as client:
            answers = [post(esl, client, n) for n in range(6)]  # a timeout here fails the test
        assert [a.status_code for a in answers] == [503] * 6
    finally:
        pg.start()
    wait_for(lambda: post(esl, None, 99).status_code == 200, "no 2xx after the database came back", 5.0)
    assert esl.post("products/update", body).status_code == 200


def post(esl: Esl, client: httpx.Client | None, n: int) -> httpx.Response:
    from storeflow.sandbox.shopify import sign_webhook as sign_body

    payload = shopify_dumps(product(price=f"{n}.00", updated_at=f"2031-01-01T00:00:{n:02d}Z"))
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "products/update",
        "X-Shopify-Shop-Domain": "test-shop.myshopify.com",
        "X-Shopify-Event-Id": f"outage-{n}-{time.monotonic_ns()}",
        "X-Shopify-Hmac-Sha256": sign_body(esl.secret, payload),
    }
    url = f"{esl.app_url}/webhooks/shopify/products/update"
    if client is None:
        return httpx.post(url, content=payload, headers=headers, timeout=SHOPIFY_TIMEOUT)
    return client.post(url, content=payload, headers=headers)
