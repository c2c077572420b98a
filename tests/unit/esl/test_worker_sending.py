"""How the worker splits a refused batch and classifies failures (Hipoink behind httpx.MockTransport)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from storeflow.esl.hipoink import HipoinkClient
from storeflow.esl.store import ClaimedItem
from storeflow.esl.worker import Worker, WorkerConfig


def claimed(item_id: int, attempts: int, answered_errors: int = 0) -> ClaimedItem:
    return ClaimedItem(
        id=item_id,
        store_code="001",
        product_id=item_id,
        operation="upsert",
        attempts=attempts,
        answered_errors=answered_errors,
    )


def fake_hipoink(refuse: set[str] | None = None, sign_ok: bool = True, status: int = 200) -> tuple[Any, list[Any]]:
    calls: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append((request.url.path, body))
        if status != 200:
            return httpx.Response(status, headers={"Retry-After": "2"})
        if not sign_ok:
            return httpx.Response(200, json={"error_code": 40001, "error_msg": "sign error"})
        codes = [p["pc"] for p in body.get("f1", [])] or [body.get("pc")]
        if refuse and any(c in refuse for c in codes):
            return httpx.Response(200, json={"error_code": 40003, "error_msg": "pp is not a price"})
        return httpx.Response(200, json={"error_code": 0, "error_msg": "", "count": len(codes)})

    return handler, calls


def send(handler: Any, n: int, **config: Any) -> list[Any]:
    async def run() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            worker = Worker(
                "postgresql://unused",
                HipoinkClient(http, "http://hipoink", "default", "s"),
                WorkerConfig(rate_per_second=1e6, **config),
            )
            pairs = [(claimed(i, 1), {"pc": f"P{i}", "pn": "x", "pp": "1.00"}) for i in range(n)]
            return await worker._send_group("001", pairs)

    return asyncio.run(run())


def test_one_refused_product_is_isolated_by_splitting() -> None:
    handler, calls = fake_hipoink(refuse={"P5"})
    results = send(handler, 16)
    failed = [r.item.id for r in results if r.log_status == "failed"]
    assert failed == [5]
    assert sum(r.log_status == "succeeded" for r in results) == 15
    assert len(calls) <= 2 * 4 + 1  # a binary search, not one request per product
    assert results[5].error_code == 40003


def test_a_refusal_of_everything_stops_splitting() -> None:
    handler, calls = fake_hipoink(sign_ok=False)
    results = send(handler, 64)
    assert {r.log_status for r in results} == {"failed"}
    assert len(calls) <= 3


def test_transient_failure_schedules_a_retry_then_goes_dead() -> None:
    handler, _ = fake_hipoink(status=503)
    results = send(handler, 3, max_attempts=3, initial_delay=0.5, multiplier=2.0)
    assert {(r.log_status, r.state, r.delay) for r in results} == {("retry", "pending", 2.0)}

    async def last_attempt(status: int, answered: int) -> Any:
        handler, _ = fake_hipoink(status=status)
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            worker = Worker("postgresql://unused", HipoinkClient(http, "http://h"), WorkerConfig(max_attempts=3))
            item = claimed(1, 3, answered)
            return await worker._send_group("001", [(item, {"pc": "A", "pn": "a", "pp": "1"})])

    # issue 11: a 500 Hipoink answered is an attempt (the third one spends MAX_RETRY_ATTEMPTS) ...
    (result,) = asyncio.run(last_attempt(500, answered=2))
    assert (result.log_status, result.state, result.http_status) == ("dead", "dead", 500)
    # ... a 429 is not: its Retry-After is honoured, whatever the attempt count
    (result,) = asyncio.run(last_attempt(429, answered=2))
    assert (result.log_status, result.state, result.http_status, result.delay) == ("retry", "pending", 429, 2.0)


def test_single_mode_uses_product_create() -> None:
    handler, calls = fake_hipoink()

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            worker = Worker(
                "postgresql://unused", HipoinkClient(http, "http://h", "c1", "s"), WorkerConfig(mode="single")
            )
            pairs = [(claimed(i, 1), {"pc": f"P{i}", "pn": "x", "pp": "1.00"}) for i in range(3)]
            results = await worker._send_upserts("001", pairs)
            assert [r.log_status for r in results] == ["succeeded"] * 3

    asyncio.run(run())
    assert [path for path, _ in calls] == ["/api/c1/product/create"] * 3
    assert calls[0][1] == {"pc": "P0", "pn": "x", "pp": "1.00", "store_code": "001", "is_base64": "0", "sign": "s"}


def test_network_errors_are_transient() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    results = send(handler, 2)
    assert {(r.log_status, r.error) for r in results} == {("retry", "ConnectError: refused")}
