"""The sync worker against a real PostgreSQL and the Hipoink simulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from storeflow.esl.store import queue_stats, retry_dead_letters
from storeflow.esl.worker import run_worker
from storeflow.sandbox.shopify import build_deliveries, send_deliveries

from .conftest import SHOP, STORE, Esl
from .test_webhooks import product, rows

pytestmark = pytest.mark.integration


def send_products(esl: Esl, count: int, seed: int = 1) -> set[str]:
    """products/create for ``count`` generated products; returns the codes the labels must show."""
    plan = build_deliveries("products/create", count, esl.secret, SHOP, seed=seed)
    result = asyncio.run(send_deliveries(plan.deliveries, esl.app_url, concurrency=8))
    assert result.statuses == {200: count}
    with esl.connect() as conn:
        return {r["pc"] for r in conn.execute("SELECT pc FROM products WHERE status = 'valid'").fetchall()}


def log_statuses(esl: Esl) -> list[str]:
    return [r["status"] for r in rows(esl, "SELECT status FROM sync_log WHERE queue_item_id IS NOT NULL ORDER BY id")]


def test_outage_that_ends_is_retried_with_backoff_then_succeeds(esl: Esl) -> None:
    esl.add_mapping()
    esl.post("products/create", product_body())
    esl.fault(status=503, count=2, path="/product/")
    started = time.monotonic()
    esl.drain()
    assert "4006381333931" in esl.labels()
    assert log_statuses(esl) == ["retry", "retry", "succeeded"]
    attempts = rows(esl, "SELECT attempt, http_status FROM sync_log ORDER BY id")
    assert [(a["attempt"], a["http_status"]) for a in attempts] == [(1, 503), (2, 503), (3, 200)]
    assert time.monotonic() - started >= 0.05 + 0.1  # 0.05 s, then 0.1 s of backoff
    assert rows(esl, "SELECT state, attempts FROM sync_queue") == [{"state": "succeeded", "attempts": 3}]


def product_body() -> bytes:
    from storeflow.sandbox.shopify import shopify_dumps

    return shopify_dumps(product())


def test_rate_limited_429_honours_retry_after(esl: Esl) -> None:
    esl.add_mapping()
    esl.post("products/create", product_body())
    esl.fault(status=429, retry_after=0.3, count=1, path="/product/")
    started = time.monotonic()
    esl.drain()
    assert time.monotonic() - started >= 0.3
    assert log_statuses(esl) == ["retry", "succeeded"]


def test_permanent_error_is_dead_lettered_after_one_attempt(esl: Esl) -> None:
    esl.add_mapping()
    esl.post("products/create", product_body())
    config = esl.worker_config()
    stats = asyncio.run(run_worker(esl.db_url, config, esl.hipoink_url, "default", "wrong-sign", drain=True))
    assert stats.results == {"failed": 1}
    item = rows(esl, "SELECT state, attempts, last_error FROM sync_queue")[0]
    assert (item["state"], item["attempts"]) == ("failed", 1)
    assert item["last_error"] == "error_code 40001: sign error"  # HTTP 200 with error_code != 0
    log = rows(esl, "SELECT status, http_status, error_code FROM sync_log")
    assert log == [{"status": "failed", "http_status": 200, "error_code": 40001}]
    assert esl.labels() == {}
    with esl.connect() as conn:
        assert queue_stats(conn)["dead_letters"] == 1
        assert retry_dead_letters(conn, store_code=STORE) == 1
    esl.drain()
    assert "4006381333931" in esl.labels()
    assert rows(esl, "SELECT state FROM sync_queue") == [{"state": "succeeded"}]


def test_out_of_attempts_goes_dead_and_retry_brings_it_back(esl: Esl) -> None:
    esl.add_mapping()
    esl.post("products/create", product_body())
    esl.fault(status=502, count=100, path="/product/")
    esl.drain(max_attempts=2)
    assert rows(esl, "SELECT state, attempts FROM sync_queue") == [{"state": "dead", "attempts": 2}]
    assert log_statuses(esl) == ["retry", "dead"]
    httpx_delete_faults(esl)
    with esl.connect() as conn:
        stats = queue_stats(conn)
        assert stats["counts"]["dead"] == 1 and stats["last_errors"][0]["error"] == "HTTP 502"
        assert retry_dead_letters(conn, item_ids=[999]) == 0
        assert retry_dead_letters(conn) == 1
    esl.drain()
    assert "4006381333931" in esl.labels()


def httpx_delete_faults(esl: Esl) -> None:
    import httpx

    httpx.delete(f"{esl.hipoink_url}/_sandbox/faults").raise_for_status()


def test_pending_updates_of_one_product_are_coalesced_latest_wins(esl: Esl) -> None:
    from storeflow.sandbox.shopify import shopify_dumps

    esl.add_mapping()
    for minute, price in enumerate(["10.00", "11.00", "12.00"]):
        esl.post("products/update", shopify_dumps(product(price=price, updated_at=f"2026-01-05T16:0{minute}:00Z")))
    assert len(rows(esl, "SELECT id FROM sync_queue")) == 3
    esl.drain()
    assert esl.labels()["4006381333931"]["pp"] == "12.00"
    assert esl.labels()["4006381333931"]["updates"] == 1  # one send for three webhooks
    details = [r["detail"] for r in rows(esl, "SELECT detail FROM sync_log ORDER BY queue_item_id")]
    assert details[:2] == [f"coalesced into #{3}"] * 2 or all(d and d.startswith("coalesced") for d in details[:2])


def test_notify_wakes_the_worker_long_before_the_poll_interval(esl: Esl) -> None:
    esl.add_mapping()
    config = esl.worker_config(poll_interval=30.0)
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()

    def work() -> None:
        loop.run_until_complete(
            run_worker(
                esl.db_url,
                config,
                esl.hipoink_url,
                "default",
                esl.settings.HIPOINK_API_SECRET.get_secret_value(),
                stop=stop,
            )
        )

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)  # the worker is idle, waiting for a notification
        acked = time.time()
        assert esl.post("products/create", product_body()).status_code == 200
        deadline = time.monotonic() + 5
        while "4006381333931" not in esl.labels():
            assert time.monotonic() < deadline, "not woken by NOTIFY"
            time.sleep(0.01)
        assert esl.labels()["4006381333931"]["received_at"] - acked < 1.0
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()
    latency = rows(esl, "SELECT latency_ms FROM sync_log WHERE status = 'succeeded'")[0]["latency_ms"]
    assert 0 < latency < 1000


def _worker_env(esl: Esl, tmp_path: Path, lease: float = 2.0) -> dict[str, str]:
    config = tmp_path / "storeflow.toml"
    config.write_text(f"[esl]\nlease_seconds = {lease}\n")
    return {
        **os.environ,
        "DATABASE_URL": esl.db_url,
        "STOREFLOW_CONFIG": str(config),
        "STOREFLOW_HOME": str(tmp_path / "home"),
        "LOG_DIRECTORY": str(tmp_path / "logs"),
        "HIPOINK_API_BASE_URL": esl.hipoink_url,
        "HIPOINK_CLIENT_ID": "default",
        "HIPOINK_API_SECRET": esl.settings.HIPOINK_API_SECRET.get_secret_value(),
        "HIPOINK_RATE_LIMIT_PER_SECOND": "1000",
        "HIPOINK_BATCH_SIZE": "25",
        "SYNC_WORKER_INTERVAL_SECONDS": "0.5",
        "RETRY_INITIAL_DELAY_SECONDS": "0.05",
        "APP_ENVIRONMENT": "test",
    }


def _spawn_worker(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "storeflow", "esl", "worker", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_worker_killed_mid_batch_loses_nothing(esl: Esl, tmp_path: Path) -> None:
    esl.add_mapping()
    expected = send_products(esl, 60, seed=2)
    # every Hipoink request hangs for 30 s: the worker will be killed while it holds a batch
    esl.fault(latency_ms=30_000, seconds=600, path="/product/")
    victim = _spawn_worker(_worker_env(esl, tmp_path), tmp_path, "--concurrency", "1")
    try:
        deadline = time.monotonic() + 30
        while not rows(esl, "SELECT 1 FROM sync_queue WHERE state = 'in_progress'"):
            assert victim.poll() is None, victim.communicate()[1]
            assert time.monotonic() < deadline, "the worker never claimed a batch"
            time.sleep(0.05)
        time.sleep(0.3)  # now inside the HTTP request
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=10)
    held = rows(esl, "SELECT id FROM sync_queue WHERE state = 'in_progress'")
    assert held, "the killed worker held claimed items"
    httpx_delete_faults(esl)
    esl.sim.stores.clear()  # whatever the hanging requests delivered does not count
    time.sleep(2.1)  # the lease (2 s) passes
    esl.drain()
    assert set(esl.labels()) == expected
    reaped = rows(esl, "SELECT DISTINCT queue_item_id FROM sync_log WHERE status = 'lease_expired'")
    assert {r["queue_item_id"] for r in reaped} == {h["id"] for h in held}
    assert rows(esl, "SELECT DISTINCT state FROM sync_queue") == [{"state": "succeeded"}]


def test_two_workers_at_once_send_each_item_once(esl: Esl, tmp_path: Path) -> None:
    esl.add_mapping()
    expected = send_products(esl, 300, seed=3)
    # slow answers (1 s per request, 12 batches) so neither worker can drain the queue before the other starts
    esl.fault(latency_ms=1000, seconds=600, path="/product/")
    env = _worker_env(esl, tmp_path, lease=30)
    workers = [_spawn_worker(env, tmp_path, "--drain", "--concurrency", "1") for _ in range(2)]
    outputs = [w.communicate(timeout=120) for w in workers]
    assert all(w.returncode == 0 for w in workers), [o[1][-2000:] for o in outputs]
    labels = esl.labels()
    assert set(labels) == expected
    assert {p["updates"] for p in labels.values()} == {1}  # nothing was sent twice
    by_worker = rows(esl, "SELECT worker, count(*) AS n FROM sync_log WHERE status = 'succeeded' GROUP BY worker")
    assert len(by_worker) == 2, by_worker  # both took part
    per_item = rows(esl, "SELECT queue_item_id, count(*) AS n FROM sync_log GROUP BY 1 HAVING count(*) > 1")
    assert per_item == []
    total: Any = sum(r["n"] for r in by_worker)
    assert total == len(rows(esl, "SELECT id FROM sync_queue"))
