"""The one retry decision (`storeflow.http.policy.cause_of` + `decide`), table by table for the three pipelines.

Hallmark's Aura client, the CRM portal clients and the ESL worker each build a `RetryPolicy` from their
settings; these tables pin what each of them does after every kind of failed attempt.
"""

from __future__ import annotations

import httpx
import pytest

from storeflow.crm.portals import SESSION_STATUSES as CRM_SESSIONS
from storeflow.crm.portals import retry_policy
from storeflow.esl.hipoink import judge_reply  # where the Hipoink client reads its replies
from storeflow.hallmark.client import SESSION_STATUSES as AURA_SESSIONS
from storeflow.hallmark.client import HallmarkClientConfig
from storeflow.http.policy import (
    Action,
    Body,
    Cause,
    RetryBudget,
    RetryPolicy,
    cause_of,
    decide,
    failure_cause,
)

NONE: frozenset[int] = frozenset()

# ---------------------------------------------------------------- what failed


@pytest.mark.parametrize(
    ("status", "body", "sessions", "expected"),
    [
        # Hallmark (Aura): 401 and a bounce to the login page mean "log in again", a 403 is a refusal
        (401, Body.READABLE, AURA_SESSIONS, Cause.SESSION_EXPIRED),
        (302, Body.LOGIN_PAGE, AURA_SESSIONS, Cause.SESSION_EXPIRED),
        (403, Body.READABLE, AURA_SESSIONS, Cause.PERMANENT),
        (200, Body.INVALID_SESSION, AURA_SESSIONS, Cause.SESSION_EXPIRED),  # aura:invalidSession, empty body
        (404, Body.INVALID_SESSION, AURA_SESSIONS, Cause.SESSION_EXPIRED),  # the open-source server's status
        (200, Body.OUT_OF_SYNC, AURA_SESSIONS, Cause.OUT_OF_SYNC),
        (404, Body.OUT_OF_SYNC, AURA_SESSIONS, Cause.OUT_OF_SYNC),
        (404, Body.READABLE, AURA_SESSIONS, Cause.PERMANENT),  # a 404 that is no Aura event
        (200, Body.MALFORMED, AURA_SESSIONS, Cause.ANSWERED),  # truncated, no action result, HTML
        (200, Body.APP_ERROR, AURA_SESSIONS, Cause.PERMANENT),  # the action's state is ERROR
        (429, Body.READABLE, AURA_SESSIONS, Cause.RATE_LIMITED),
        (503, Body.READABLE, AURA_SESSIONS, Cause.UNAVAILABLE),
        (500, Body.READABLE, AURA_SESSIONS, Cause.ANSWERED),
        (200, Body.READABLE, AURA_SESSIONS, None),
        # CRM portals: 401 and 403 both mean an expired session; fetch's status 0 is no answer
        (401, Body.READABLE, CRM_SESSIONS, Cause.SESSION_EXPIRED),
        (403, Body.READABLE, CRM_SESSIONS, Cause.SESSION_EXPIRED),
        (None, Body.READABLE, CRM_SESSIONS, Cause.UNAVAILABLE),
        (502, Body.READABLE, CRM_SESSIONS, Cause.ANSWERED),
        (504, Body.READABLE, CRM_SESSIONS, Cause.UNAVAILABLE),
        (404, Body.READABLE, CRM_SESSIONS, Cause.PERMANENT),
        (429, Body.READABLE, CRM_SESSIONS, Cause.RATE_LIMITED),
        (302, Body.LOGIN_PAGE, CRM_SESSIONS, Cause.SESSION_EXPIRED),
        # Hipoink (ESL): no status means "log in again"; a 401 is a refusal like any 4xx
        (401, Body.READABLE, NONE, Cause.PERMANENT),
        (408, Body.READABLE, NONE, Cause.UNAVAILABLE),
        (200, Body.MALFORMED, NONE, Cause.ANSWERED),  # a 2xx without a readable error_code
        (200, Body.APP_ERROR, NONE, Cause.PERMANENT),  # error_code != 0
    ],
)
def test_cause_of(status: int | None, body: Body, sessions: frozenset[int], expected: Cause | None) -> None:
    assert cause_of(status, body, session_statuses=sessions) is expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.ReadTimeout("slow"), Cause.UNAVAILABLE),
        (httpx.ConnectError("refused"), Cause.UNAVAILABLE),
        (httpx.RemoteProtocolError("cut"), Cause.UNAVAILABLE),
        (httpx.UnsupportedProtocol("ftp"), Cause.PERMANENT),
        (ValueError("ours"), Cause.PERMANENT),
    ],
)
def test_no_answer(error: BaseException, expected: Cause) -> None:
    assert cause_of(None, error=error) is expected


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (200, b'{"error_code": 0}', Body.READABLE),
        (200, b'{"error_code": 3, "error_msg": "bad sku"}', Body.APP_ERROR),
        (200, b'{"error_code": "x"}', Body.APP_ERROR),
        (200, b'{"error_co', Body.MALFORMED),
        (200, b"<html>gateway</html>", Body.MALFORMED),
        (200, b'{"ok": true}', Body.MALFORMED),
        (500, b"", Body.READABLE),
        (502, b"", Body.READABLE),
        (503, b"", Body.READABLE),
        (504, b"", Body.READABLE),
        (408, b"", Body.READABLE),
        (429, b"", Body.READABLE),
        (400, b'{"error": "no"}', Body.READABLE),
        (401, b"", Body.READABLE),
    ],
)
def test_the_esl_verdicts_and_the_shared_classification_agree(status: int, body: bytes, kind: Body) -> None:
    """What the worker derives from `judge_reply` (`failure_cause`) is what `cause_of` says for that answer."""
    verdict = judge_reply(status, body)
    expected = None if verdict.ok else failure_cause(verdict.http_status, verdict.transient)
    assert cause_of(status, kind) is expected


# ---------------------------------------------------------------- what to do about it

HALLMARK = HallmarkClientConfig("http://portal.test", max_retries=2, retry_after_cap=30).retry_policy(2.5)
CRM = retry_policy(2, 300)
ESL = RetryBudget(max_attempts=3, initial_delay=1.0, multiplier=2.0, max_delay=300.0, window=86400.0).policy
R, A, S, STOP, F = Action.RETRY, Action.REAUTHENTICATE, Action.RESYNC, Action.STOP, Action.FAIL


@pytest.mark.parametrize(
    ("policy", "cause", "attempt", "kwargs", "action", "delay"),
    [
        # Hallmark: timeouts, 5xx and malformed bodies back off from the request kind's interval, up to 60s
        (HALLMARK, Cause.UNAVAILABLE, 1, {}, R, 2.5),
        (HALLMARK, Cause.ANSWERED, 2, {}, R, 5.0),
        (HALLMARK, Cause.ANSWERED, 3, {}, F, 0.0),  # MAX_RETRIES=2 spent
        (HALLMARK, Cause.ANSWERED, 2, {"retry_after": 40.0}, R, 5.0),  # a 5xx's Retry-After is no rate limit
        # ... a 429 waits its Retry-After; past RETRY_AFTER_CAP_SECONDS the run stops (resumable)
        (HALLMARK, Cause.RATE_LIMITED, 1, {"retry_after": 7.0}, R, 7.0),
        (HALLMARK, Cause.RATE_LIMITED, 1, {}, R, 2.5),
        (HALLMARK, Cause.RATE_LIMITED, 1, {"retry_after": 600.0}, STOP, 0.0),
        (HALLMARK, Cause.RATE_LIMITED, 3, {"retry_after": 600.0}, STOP, 0.0),  # the cap before the count
        (HALLMARK, Cause.RATE_LIMITED, 3, {"retry_after": 1.0}, F, 0.0),
        # ... an expired session logs in once; a framework update re-reads the fwuid, then adopts the expected one
        (HALLMARK, Cause.SESSION_EXPIRED, 1, {}, A, 0.0),
        (HALLMARK, Cause.SESSION_EXPIRED, 1, {"reauthenticated": True}, F, 0.0),
        (HALLMARK, Cause.OUT_OF_SYNC, 1, {}, S, 0.0),
        (HALLMARK, Cause.OUT_OF_SYNC, 1, {"resynced": 1}, S, 0.0),
        (HALLMARK, Cause.OUT_OF_SYNC, 1, {"resynced": 2}, F, 0.0),
        (HALLMARK, Cause.PERMANENT, 1, {}, F, 0.0),  # an action ERROR, a 403, a 404 without an event
        # CRM: 0.5s doubling up to 10s, 429s and transient failures share MAX_RETRIES
        (CRM, Cause.ANSWERED, 1, {}, R, 0.5),
        (CRM, Cause.UNAVAILABLE, 2, {}, R, 1.0),
        (CRM, Cause.ANSWERED, 3, {}, F, 0.0),
        (CRM, Cause.RATE_LIMITED, 2, {"retry_after": 300.0}, R, 300.0),  # at the cap: waited
        (CRM, Cause.RATE_LIMITED, 1, {"retry_after": 301.0}, STOP, 0.0),  # the store fails, try later
        (CRM, Cause.RATE_LIMITED, 3, {}, F, 0.0),
        (CRM, Cause.SESSION_EXPIRED, 1, {}, A, 0.0),  # 401/403: the runner logs in again (or asks for bootstrap)
        (CRM, Cause.PERMANENT, 1, {}, F, 0.0),
        # ESL: only answered errors count (MAX_RETRY_ATTEMPTS attempts), outages are bounded by the window
        (ESL, Cause.ANSWERED, 1, {"counted": 1}, R, 1.0),
        (ESL, Cause.ANSWERED, 3, {"counted": 3}, F, 0.0),
        (ESL, Cause.UNAVAILABLE, 40, {"counted": 0}, R, 300.0),
        (ESL, Cause.UNAVAILABLE, 6, {"retry_after": 3.0}, R, 32.0),  # a 503's Retry-After, when shorter
        (ESL, Cause.UNAVAILABLE, 1, {"retry_after": 30.0}, R, 30.0),  # ... and when longer
        (ESL, Cause.UNAVAILABLE, 400, {"failing_for": 86400.0}, F, 0.0),
        (ESL, Cause.RATE_LIMITED, 3, {"retry_after": 900.0}, R, 900.0),  # no cap: honoured as given
        (ESL, Cause.LEASE_EXPIRED, 50, {"counted": 9}, R, 0.0),
        (ESL, Cause.LEASE_EXPIRED, 50, {"failing_for": 86401.0}, F, 0.0),
        (ESL, Cause.PERMANENT, 1, {}, F, 0.0),
    ],
)
def test_decide(
    policy: RetryPolicy, cause: Cause, attempt: int, kwargs: dict[str, object], action: Action, delay: float
) -> None:
    decision = decide(cause, policy, attempt=attempt, **kwargs)  # type: ignore[arg-type]
    assert (decision.action, decision.delay) == (action, pytest.approx(delay))
    assert decision.retry is (action is Action.RETRY)


@pytest.mark.parametrize(
    ("cause", "kwargs", "spent"),
    [
        (Cause.PERMANENT, {}, None),
        (Cause.ANSWERED, {"counted": 3}, "attempts"),
        (Cause.UNAVAILABLE, {"failing_for": 90000.0}, "window"),
    ],
)
def test_a_failure_says_whether_the_budget_ran_out_or_the_request_was_refused(
    cause: Cause, kwargs: dict[str, object], spent: str | None
) -> None:
    decision = decide(cause, ESL, attempt=3, **kwargs)  # type: ignore[arg-type]
    assert decision.action is Action.FAIL and decision.spent == spent


def test_a_stop_names_the_wait_and_the_cap() -> None:
    decision = decide(Cause.RATE_LIMITED, HALLMARK, attempt=1, retry_after=600)
    assert decision.reason == "Retry-After 600s exceeds the cap of 30s; stopping this source"
