"""HIPOINK_RATE_LIMIT_PER_SECOND per Hipoink server across workers (RATE_LIMIT_SCOPE), real PostgreSQL + simulator."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from storeflow.esl.hipoink import HipoinkClient
from storeflow.esl.ratelimit import SharedHipoinkLimiter, hipoink_key
from storeflow.esl.worker import RateLimiter, Worker
from storeflow.http.quota import peak_in_window
from tests.integration.test_core_rate_limits import in_threads

from .conftest import STORE, Esl
from .test_webhooks import rows
from .test_worker import send_products

pytestmark = pytest.mark.integration


def limit_rows(esl: Esl) -> dict[str, int]:
    return {r["key"]: r["granted"] for r in rows(esl, "SELECT key, granted FROM rate_limits")}


def run_workers(esl: Esl, count: int, **overrides: Any) -> list[Worker]:
    """``count`` workers, each in a thread with its own event loop and connections, draining the queue."""
    workers: list[Worker] = []

    async def one(_: int) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            client = HipoinkClient(
                http,
                esl.hipoink_url,
                esl.settings.HIPOINK_CLIENT_ID,
                esl.settings.HIPOINK_API_SECRET.get_secret_value(),
            )
            worker = Worker(esl.db_url, client, esl.worker_config(**overrides))
            workers.append(worker)
            await worker.run(drain=True)

    in_threads(count, one)
    return workers


def test_workers_share_one_limit_per_hipoink_server(esl: Esl) -> None:
    esl.add_mapping()
    codes = send_products(esl, 60)
    workers = run_workers(esl, 2, batch_size=1, rate_per_second=100.0)
    assert set(esl.labels()) == codes
    limiters = [w.limiter for w in workers]
    assert all(isinstance(limiter, SharedHipoinkLimiter) for limiter in limiters)
    slots = sorted(
        s for limiter in limiters if isinstance(limiter, SharedHipoinkLimiter) for s in limiter.server.granted
    )
    assert len(slots) == sum(w.stats.requests for w in workers) >= 60
    assert min(b - a for a, b in itertools.pairwise(slots)) >= 0.01 - 1e-6
    assert peak_in_window(slots, 1.0) <= 101
    assert limit_rows(esl)[hipoink_key(esl.hipoink_url)] >= len(slots)


def test_a_store_whose_mapping_sets_a_limit_has_one_of_its_own(esl: Esl) -> None:
    esl.add_mapping()
    with esl.connect() as conn:
        conn.execute(
            "UPDATE store_mappings SET hipoink_rate_limit_per_second = 200 WHERE hipoink_store_code = %s", (STORE,)
        )
    codes = send_products(esl, 10)
    esl.drain(batch_size=2)
    assert set(esl.labels()) == codes
    granted = limit_rows(esl)
    assert granted[hipoink_key(esl.hipoink_url, STORE)] >= 5
    assert hipoink_key(esl.hipoink_url) not in granted


def test_process_scope_paces_each_worker_alone_as_before(esl: Esl) -> None:
    esl.add_mapping()
    codes = send_products(esl, 10)
    workers = run_workers(esl, 1, batch_size=2, rate_scope="process")
    assert set(esl.labels()) == codes
    assert type(workers[0].limiter) is RateLimiter
    assert workers[0].stats.requests >= 5
    assert limit_rows(esl) == {}
