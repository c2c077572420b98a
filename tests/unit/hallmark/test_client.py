"""The Aura client's recovery rules, driven through httpx.MockTransport (no network)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from storeflow.errors import RateLimitStop
from storeflow.hallmark import aura
from storeflow.hallmark.auth import Authenticator, PortalSession
from storeflow.hallmark.client import AuraClient, HallmarkClientConfig, RequestFailedError
from storeflow.http.policy import PolitePolicy
from storeflow.http.throttle import Throttle
from storeflow.settings import load_settings

BASE = "http://portal.test"


class FakeAuth(Authenticator):
    async def session(self) -> PortalSession:
        return PortalSession(BASE, [{"name": "sid", "value": "s1", "domain": "portal.test", "path": "/"}], "T1", "F1")

    async def login(self) -> PortalSession:
        self.logins += 1
        return PortalSession(BASE, [{"name": "sid", "value": "s2", "domain": "portal.test", "path": "/"}], "T2", "F1")


def _ok(value: Any) -> httpx.Response:
    return httpx.Response(200, text=json.dumps({"actions": [{"state": "SUCCESS", "returnValue": value}]}))


def _client(handler: Callable[[httpx.Request], httpx.Response], **env: str) -> tuple[AuraClient, Throttle]:
    settings = load_settings(env={"BASE_URL": BASE, "MAX_RETRIES": "2", "RETRY_AFTER_CAP_SECONDS": "30", **env})
    slept: list[float] = []
    throttle = Throttle(PolitePolicy(intervals={"detail": 0, "search": 0}, jitter=0, break_after=0))
    throttle.clock = lambda: 0.0

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    original = throttle.abefore
    throttle.abefore = lambda kind, sleep=no_sleep: original(kind, sleep)  # type: ignore[method-assign]
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = AuraClient(HallmarkClientConfig.from_settings(settings), http, FakeAuth(settings), throttle)
    client.slept = slept  # type: ignore[attr-defined]
    return client, throttle


def _form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def _run(client: AuraClient, action: aura.AuraAction) -> Any:
    async def go() -> Any:
        try:
            return await client.call(action)
        finally:
            await client.http.aclose()

    return asyncio.run(go())


def test_429_waits_retry_after_then_succeeds() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "7"}), _ok({"orderHeader": {}})]
    client, throttle = _client(lambda r: answers.pop(0))
    assert _run(client, aura.order_detail("1")) == {"orderHeader": {}}
    assert client.stats.rate_limited == 1 and throttle._not_before == 7.0


def test_retry_after_past_the_cap_stops_the_run() -> None:
    client, _ = _client(lambda r: httpx.Response(429, headers={"Retry-After": "600"}))
    with pytest.raises(RateLimitStop, match="exceeds the cap of 30s"):
        _run(client, aura.order_detail("1"))


def test_empty_body_logs_in_again_once_with_the_new_token() -> None:
    tokens: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tokens.append(_form(request)["aura.token"])
        return httpx.Response(200, text="") if len(tokens) == 1 else _ok({"ok": 1})

    client, _ = _client(handler)
    assert _run(client, aura.billing_detail("5")) == {"ok": 1}
    assert tokens == ["T1", "T2"] and client.auth.logins == 1


def test_invalid_session_twice_fails_the_record() -> None:
    body = "*/" + json.dumps({"event": {"descriptor": aura.INVALID_SESSION}}) + "/*ERROR*/"
    client, _ = _client(lambda r: httpx.Response(200, text=body))
    with pytest.raises(RequestFailedError, match="again after logging in"):
        _run(client, aura.order_detail("1"))
    assert client.auth.logins == 1


@pytest.mark.parametrize(
    "response", [httpx.Response(401), httpx.Response(302, headers={"location": "/s/login?ec=302"})]
)
def test_401_or_login_redirect_reauthenticates(response: httpx.Response) -> None:
    answers = [response, _ok([1])]
    client, _ = _client(lambda r: answers.pop(0))
    assert _run(client, aura.order_detail("1")) == [1]
    assert client.auth.logins == 1


def test_client_out_of_sync_rereads_fwuid_from_the_page() -> None:
    fwuids: list[str] = []
    message = "Framework has been updated. Expected: F9 Actual: F1"
    event = {"event": {"descriptor": aura.CLIENT_OUT_OF_SYNC, "attributes": {"values": {"message": message}}}}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, text='<script>{"fwuid":"F2"}</script>')
        fwuids.append(json.loads(_form(request)["aura.context"])["fwuid"])
        return httpx.Response(200, text=f"*/{json.dumps(event)}/*ERROR*/") if len(fwuids) == 1 else _ok(1)

    client, _ = _client(handler)
    assert _run(client, aura.order_detail("1")) == 1
    assert fwuids == ["F1", "F2"] and client.stats.resynced == 1


def test_transient_errors_retry_with_backoff_then_give_up() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503)

    client, _ = _client(handler)
    with pytest.raises(RequestFailedError, match="HTTP 503"):
        _run(client, aura.order_detail("1"))
    assert len(calls) == 3 and client.stats.retries == 2  # MAX_RETRIES=2


def test_action_error_is_not_retried() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, text=json.dumps({"actions": [{"state": "ERROR", "error": [{"message": "nope"}]}]}))

    client, _ = _client(handler)
    with pytest.raises(aura.ActionError, match="nope"):
        _run(client, aura.order_detail("1"))
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("action", "timeout"), [(aura.order_detail("1"), 11.0), (aura.order_search(["1"], "a", "b", 1), 99.0)]
)
def test_search_and_detail_use_their_own_timeouts(action: aura.AuraAction, timeout: float) -> None:
    seen: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"]["read"])
        return _ok({"result": []})

    client, _ = _client(handler, REQUEST_TIMEOUT_SECONDS="11", SEARCH_TIMEOUT_SECONDS="99")
    _run(client, action)
    assert seen == [timeout]


def test_throttle_kinds_follow_settings() -> None:
    from storeflow.http.throttle import policy_from_settings

    settings = load_settings(
        env={"RATE_LIMIT_DETAIL_SECONDS": "2.5", "RATE_LIMIT_SEARCH_SECONDS": "5", "CONSERVATIVE_MODE": "true"}
    )
    policy = policy_from_settings(settings)
    assert (policy.interval("detail"), policy.interval("search")) == (5.0, 10.0)


from tests.unit.hallmark.test_aura import OUT_OF_SYNC_FORMS, SESSION_EXPIRED_FORMS  # noqa: E402


@pytest.mark.parametrize("body", SESSION_EXPIRED_FORMS.values(), ids=SESSION_EXPIRED_FORMS.keys())
def test_every_expired_session_form_logs_in_again_and_repeats_the_call(body: str) -> None:
    tokens: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tokens.append(_form(request)["aura.token"])
        return httpx.Response(200, text=body) if len(tokens) == 1 else _ok({"orderHeader": {"id": 1}})

    client, _ = _client(handler)
    assert _run(client, aura.order_detail("1")) == {"orderHeader": {"id": 1}}
    assert tokens == ["T1", "T2"] and client.auth.logins == 1 and client.stats.reauthenticated == 1


@pytest.mark.parametrize(("body", "expected"), OUT_OF_SYNC_FORMS.values(), ids=OUT_OF_SYNC_FORMS.keys())
def test_every_framework_update_form_resyncs_and_repeats_the_call(body: str, expected: str | None) -> None:
    fwuids: list[str] = []
    # the community page names no fwuid when the answer does (the answer's must do), else "PAGE"
    page = '<script>{"fwuid":"PAGE"}</script>' if expected is None else "<html>no bootstrap</html>"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, text=page)
        fwuids.append(json.loads(_form(request)["aura.context"])["fwuid"])
        return httpx.Response(200, text=body) if len(fwuids) == 1 else _ok(1)

    client, _ = _client(handler)
    assert _run(client, aura.order_detail("1")) == 1
    assert fwuids == ["F1", expected or "PAGE"] and client.stats.resynced == 1


def test_a_page_still_on_the_old_fwuid_then_the_fwuid_the_server_expects() -> None:
    fwuids: list[str] = []
    stale = OUT_OF_SYNC_FORMS["message in the event's values"][0]  # "Expected: NEW1"

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # a cached community page still carrying the old release's fwuid
            return httpx.Response(200, text='<script>{"fwuid":"F1"}</script>')
        fwuids.append(json.loads(_form(request)["aura.context"])["fwuid"])
        return httpx.Response(200, text=stale) if len(fwuids) <= 2 else _ok(1)

    client, _ = _client(handler)
    assert _run(client, aura.order_detail("1")) == 1
    assert fwuids == ["F1", "F1", "NEW1"] and client.stats.resynced == 2


def test_an_answer_without_the_action_is_retried() -> None:
    answers = [httpx.Response(200, text=json.dumps({"actions": [], "context": {}})), _ok({"result": []})]
    client, _ = _client(lambda r: answers.pop(0))
    assert _run(client, aura.order_search(["1"], "a", "b", 1)) == {"result": []}
    assert client.stats.retries == 1


@pytest.mark.parametrize("status", [404, 500])
def test_aura_events_sent_with_an_error_status_are_still_events(status: int) -> None:
    """The open-source Aura server answers InvalidSessionException with 404 (forcedotcom/aura)."""
    body = SESSION_EXPIRED_FORMS["Aura's own answer: CSRF guard, ERROR wrapper, newToken"]
    answers = [httpx.Response(status, text=body), _ok([1])]
    client, _ = _client(lambda r: answers.pop(0))
    assert _run(client, aura.order_detail("1")) == [1]
    assert client.auth.logins == 1 and client.stats.retries == 0
