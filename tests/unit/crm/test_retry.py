"""How the CRM clients wait before retrying: backoff for transient answers, Retry-After for 429s."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from storeflow.crm.portals import DownloadError, next_wait, request_with_retry, retry_policy
from storeflow.http.policy import Cause


@pytest.mark.parametrize(
    ("cause", "attempt", "retry_after", "cap", "expected"),
    [
        (Cause.ANSWERED, 1, None, 300, 0.5),  # 5xx: the shared backoff
        (Cause.ANSWERED, 3, "120", 300, 2.0),  # a 5xx's Retry-After is not a rate limit
        (Cause.RATE_LIMITED, 1, "7", 300, 7.0),  # 429: what the portal asks for
        (Cause.RATE_LIMITED, 2, None, 300, 1.0),  # 429 without Retry-After: the backoff
        (Cause.RATE_LIMITED, 1, "soon", 300, 0.5),  # unreadable: the backoff
        (Cause.RATE_LIMITED, 1, "300", 300, 300.0),  # at the cap: still waited
    ],
)
def test_retry_wait(cause: Cause, attempt: int, retry_after: str | None, cap: float, expected: float) -> None:
    wait = next_wait(retry_policy(3, cap), cause, attempt, "GET /x", retry_after=retry_after)
    assert wait == pytest.approx(expected)


def test_a_retry_after_past_the_cap_fails_the_store_at_once() -> None:
    with pytest.raises(DownloadError, match=r"GET /api/report answered 429 .*exceeds the cap of 60s"):
        next_wait(retry_policy(3, 60), Cause.RATE_LIMITED, 1, "GET /api/report", status=429, retry_after="3600")


def test_request_with_retry_waits_out_a_429_then_succeeds() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200, text="ok")]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return answers.pop(0)

    async def run() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            return await request_with_retry(client, "GET", "http://127.0.0.1/api/report", 2, 60)

    assert asyncio.run(run()).text == "ok"
    assert seen == ["/api/report", "/api/report"]


def test_request_with_retry_stops_on_a_long_retry_after_without_asking_again() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(429, headers={"Retry-After": "900"})

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            await request_with_retry(client, "GET", "http://127.0.0.1/api/report", 3, 300)

    with pytest.raises(DownloadError, match="429"):
        asyncio.run(run())
    assert len(calls) == 1
