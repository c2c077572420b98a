"""The CRM OTP webhook poller never types the previous login's code into a new prompt."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from storeflow.crm.runner import otp_source
from storeflow.errors import StoreflowError
from storeflow.settings import CrmStore

STORE = CrmStore(
    crm="td",
    code="a668",
    name="Sector 1",
    username_env="TD_A668_USER",
    password_env="TD_A668_PASSWORD",
    otp_required=True,
    otp_webhook_url="http://127.0.0.1:9/otp",
)


def fetch_with(answers: list[Any], timeout: float = 5.0) -> tuple[str, int]:
    """The code the poller settles on, and how many times it asked; the first answer is the pre-login one."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return httpx.Response(200, json=answer) if answer is not None else httpx.Response(404)

    async def run() -> str:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            fetch = await otp_source(timeout, STORE, http, None, False, poll_seconds=0.01)
            return await fetch()

    return asyncio.run(run()), len(calls)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([{"code": "111111"}, {"code": "111111"}, {"code": "111111"}, {"code": "222222"}], "222222"),
        ([None, {"code": "333333"}], "333333"),  # nothing before the login: the first code is new
        ([{"code": "111111"}, {"code": "111111", "received_at": 1}, {"code": "444444"}], "444444"),
        ([{"code": "111111"}, {"code": ""}, {"code": "not-a-code"}, {"code": "555555"}], "555555"),
    ],
)
def test_the_poller_waits_for_a_code_newer_than_the_login(answers: list[Any], expected: str) -> None:
    code, calls = fetch_with(answers)
    assert code == expected and calls >= 2


def test_only_the_old_code_ends_in_a_clear_timeout() -> None:
    with pytest.raises(StoreflowError, match=r"no new OTP from http://127\.0\.0\.1:9/otp in time"):
        fetch_with([{"code": "111111"}], timeout=0.05)
