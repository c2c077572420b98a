from __future__ import annotations

import random
from datetime import UTC, datetime

import httpx
import pytest

from storeflow.http.policy import (
    Cause,
    Failure,
    PolitePolicy,
    RetryBudget,
    backoff_delay,
    break_length,
    classify_exception,
    classify_status,
    decide_retry,
    decide_retry_after,
    failure_cause,
    interval_with_jitter,
    next_break_after,
    parse_retry_after,
    wait_before,
)
from storeflow.http.throttle import Throttle

BASE = PolitePolicy(
    intervals={"detail": 2.5, "search": 5.0},
    jitter=0.5,
    break_after=25,
    break_after_jitter=5,
    break_duration=60.0,
    break_jitter=15.0,
)


@pytest.mark.parametrize(
    ("kind", "conservative", "low", "high"),
    [
        ("detail", False, 2.5, 3.0),
        ("search", False, 5.0, 5.5),
        ("detail", True, 5.0, 6.0),
        ("search", True, 10.0, 11.0),
        ("unknown-kind", False, 5.0, 5.5),
    ],
)
def test_interval_with_jitter_stays_in_band(kind: str, conservative: bool, low: float, high: float) -> None:
    policy = PolitePolicy(**{**BASE.__dict__, "conservative": conservative})
    rng = random.Random(1)
    values = [interval_with_jitter(policy, kind, rng) for _ in range(500)]
    assert min(values) >= low
    assert max(values) <= high
    assert max(values) - min(values) > (high - low) * 0.8  # jitter really spreads


@pytest.mark.parametrize(
    ("break_after", "spread", "conservative", "low", "high"),
    [
        (25, 5, False, 20, 30),
        (25, 0, False, 25, 25),
        (25, 5, True, 10, 14),
        (0, 5, False, 0, 0),
        (1, 5, False, 1, 6),
    ],
)
def test_break_schedule(break_after: int, spread: int, conservative: bool, low: int, high: int) -> None:
    policy = PolitePolicy(break_after=break_after, break_after_jitter=spread, conservative=conservative)
    rng = random.Random(2)
    values = {next_break_after(policy, rng) for _ in range(300)}
    assert min(values) == low
    assert max(values) == high


@pytest.mark.parametrize(
    ("duration", "jitter", "conservative", "low", "high"),
    [(60, 15, False, 45, 75), (60, 0, False, 60, 60), (60, 15, True, 90, 150), (5, 15, False, 0, 20)],
)
def test_break_length(duration: float, jitter: float, conservative: bool, low: float, high: float) -> None:
    policy = PolitePolicy(break_duration=duration, break_jitter=jitter, conservative=conservative)
    rng = random.Random(3)
    values = [break_length(policy, rng) for _ in range(500)]
    assert min(values) >= low
    assert max(values) <= high


def test_conservative_mode_doubles_delays_and_halves_break_interval() -> None:
    eff = PolitePolicy(**{**BASE.__dict__, "conservative": True}).effective()
    assert eff.intervals == {"detail": 5.0, "search": 10.0}
    assert eff.break_duration == 120.0
    assert eff.break_after == 12
    assert eff.jitter == 1.0


@pytest.mark.parametrize(
    ("now", "last", "gap", "expected"),
    [(10.0, None, 2.5, 0.0), (10.0, 9.0, 2.5, 1.5), (10.0, 5.0, 2.5, 0.0), (10.0, 10.0, 0.0, 0.0)],
)
def test_wait_before(now: float, last: float | None, gap: float, expected: float) -> None:
    assert wait_before(now, last, gap) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("attempt", "initial", "multiplier", "maximum", "expected"),
    [
        (0, 1.0, 2.0, 300, 0.0),
        (1, 1.0, 2.0, 300, 1.0),
        (2, 1.0, 2.0, 300, 2.0),
        (3, 1.0, 2.0, 300, 4.0),
        (4, 0.5, 3.0, 300, 13.5),
        (20, 1.0, 2.0, 300, 300.0),
    ],
)
def test_backoff_delay(attempt: int, initial: float, multiplier: float, maximum: float, expected: float) -> None:
    assert backoff_delay(attempt, initial, multiplier, maximum) == pytest.approx(expected)


def test_backoff_jitter_is_bounded() -> None:
    rng = random.Random(4)
    values = [backoff_delay(3, 1.0, 2.0, 300, jitter=0.25, rng=rng) for _ in range(300)]
    assert 3.0 <= min(values) < 3.3
    assert 4.7 < max(values) <= 5.0


NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Sun, 22 Nov 2026 12:01:00 GMT", 60.0),
        ("Sun, 22 Nov 2026 11:00:00 GMT", 0.0),
        ("soon", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected


@pytest.mark.parametrize(
    ("retry_after", "cap", "wait", "stop"),
    [
        (None, 300, 7.0, False),
        (10, 300, 10, False),
        (300, 300, 300, False),
        (301, 300, 0, True),
        (3600, 300, 0, True),
    ],
)
def test_retry_after_cap(retry_after: float | None, cap: float, wait: float, stop: bool) -> None:
    decision = decide_retry_after(retry_after, cap, fallback=7.0)
    assert (decision.wait, decision.stop) == (wait, stop)
    if stop:
        assert "cap" in decision.reason


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None),
        (302, None),
        (400, Failure.PERMANENT),
        (401, Failure.PERMANENT),
        (404, Failure.PERMANENT),
        (408, Failure.TRANSIENT),
        (422, Failure.PERMANENT),
        (429, Failure.RATE_LIMITED),
        (500, Failure.TRANSIENT),
        (502, Failure.TRANSIENT),
        (503, Failure.TRANSIENT),
    ],
)
def test_classify_status(status: int, expected: Failure | None) -> None:
    assert classify_status(status) == expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectTimeout("t"), Failure.TRANSIENT),
        (httpx.ReadTimeout("t"), Failure.TRANSIENT),
        (httpx.ConnectError("refused"), Failure.TRANSIENT),
        (httpx.RemoteProtocolError("eof"), Failure.TRANSIENT),
        (TimeoutError(), Failure.TRANSIENT),
        (ConnectionResetError(), Failure.TRANSIENT),
        (ValueError("bad json"), Failure.PERMANENT),
        (KeyError("x"), Failure.PERMANENT),
    ],
)
def test_classify_exception(exc: BaseException, expected: Failure) -> None:
    assert classify_exception(exc) == expected


def test_throttle_spaces_requests_and_takes_breaks() -> None:
    clock = [0.0]
    policy = PolitePolicy(
        intervals={"detail": 1.0},
        jitter=0.0,
        break_after=3,
        break_after_jitter=0,
        break_duration=10.0,
        break_jitter=0.0,
    )
    throttle = Throttle(policy, random.Random(0), clock=lambda: clock[0])
    waits = []
    for _ in range(7):
        wait = throttle.plan("detail")
        waits.append(wait)
        clock[0] += wait  # the request happens after the wait, instantly
    assert waits == [0.0, 1.0, 1.0, 10.0, 1.0, 1.0, 10.0]
    assert throttle.stats.breaks == 2
    assert throttle.stats.requests == 7


def test_throttle_push_back_delays_next_request() -> None:
    clock = [100.0]
    throttle = Throttle(PolitePolicy(intervals={"detail": 1.0}, jitter=0, break_after=0), clock=lambda: clock[0])
    assert throttle.plan("detail") == 0.0
    throttle.push_back(30.0)
    assert throttle.plan("detail") == pytest.approx(30.0)


# ---------------------------------------------------------------- the retry decision (issue 11)

BUDGET = RetryBudget(max_attempts=3, initial_delay=1.0, multiplier=2.0, max_delay=300.0, window=86400.0)


@pytest.mark.parametrize(
    ("status", "transient", "expected"),
    [
        (None, True, Cause.UNAVAILABLE),  # timeout, connection refused or reset
        (503, True, Cause.UNAVAILABLE),
        (504, True, Cause.UNAVAILABLE),
        (408, True, Cause.UNAVAILABLE),
        (429, True, Cause.RATE_LIMITED),
        (500, True, Cause.ANSWERED),
        (502, True, Cause.ANSWERED),
        (200, True, Cause.ANSWERED),  # a garbled 2xx body
        (400, False, Cause.PERMANENT),
        (200, False, Cause.PERMANENT),  # HTTP 200 with error_code != 0
    ],
)
def test_failure_cause(status: int | None, transient: bool, expected: Cause) -> None:
    assert failure_cause(status, transient) is expected


@pytest.mark.parametrize(
    ("cause", "failures", "answered", "failing_for", "retry_after", "state", "delay", "answered_after"),
    [
        # permanent errors dead-letter at once, whatever is left of the budget
        (Cause.PERMANENT, 1, 0, 0.0, None, "failed", 0.0, 0),
        # MAX_RETRY_ATTEMPTS bounds the retryable errors Hipoink answered
        (Cause.ANSWERED, 1, 0, 0.0, None, "pending", 1.0, 1),
        (Cause.ANSWERED, 2, 1, 1.0, None, "pending", 2.0, 2),
        (Cause.ANSWERED, 3, 2, 3.0, None, "dead", 0.0, 3),
        (Cause.ANSWERED, 9, 0, 60.0, None, "pending", 256.0, 1),  # earlier failures were outages
        # outages are bounded by the time window only; the backoff is capped
        (Cause.UNAVAILABLE, 1, 0, 0.0, None, "pending", 1.0, 0),
        (Cause.UNAVAILABLE, 3, 2, 5.0, None, "pending", 4.0, 2),
        (Cause.UNAVAILABLE, 40, 0, 3600.0, None, "pending", 300.0, 0),
        (Cause.UNAVAILABLE, 400, 0, 86400.0, None, "dead", 0.0, 0),
        (Cause.UNAVAILABLE, 1, 0, 0.0, 30.0, "pending", 30.0, 0),  # a 503's Retry-After, when longer
        (Cause.UNAVAILABLE, 6, 0, 0.0, 3.0, "pending", 32.0, 0),  # ... and when shorter
        # a 429 is not an attempt and its Retry-After is honoured as given, even past the cap
        (Cause.RATE_LIMITED, 5, 2, 10.0, 0.5, "pending", 0.5, 2),
        (Cause.RATE_LIMITED, 3, 2, 10.0, 900.0, "pending", 900.0, 2),
        (Cause.RATE_LIMITED, 2, 0, 0.0, None, "pending", 2.0, 0),
        (Cause.RATE_LIMITED, 9, 0, 90000.0, 1.0, "dead", 0.0, 0),
        # a lease expiry (our worker crashed mid-send) is not an attempt: straight back to the queue
        (Cause.LEASE_EXPIRED, 3, 2, 30.0, None, "pending", 0.0, 2),
        (Cause.LEASE_EXPIRED, 50, 0, 86401.0, None, "dead", 0.0, 0),
    ],
)
def test_decide_retry(
    cause: Cause,
    failures: int,
    answered: int,
    failing_for: float,
    retry_after: float | None,
    state: str,
    delay: float,
    answered_after: int,
) -> None:
    decision = decide_retry(
        cause, BUDGET, failures=failures, answered=answered, failing_for=failing_for, retry_after=retry_after
    )
    assert (decision.state, decision.delay, decision.answered) == (state, delay, answered_after)
    assert decision.retry is (state == "pending")
    # the reason says what happened, never "returned to the queue" for a dead letter
    assert ("dead-lettered" in decision.reason) is (state != "pending")
    assert ("queue" in decision.reason or "retry in" in decision.reason) is (state == "pending")


def test_decide_retry_reasons_name_the_budget_spent() -> None:
    spent = decide_retry(Cause.ANSWERED, BUDGET, failures=3, answered=2)
    assert spent.reason == "dead-lettered: 3 retryable error(s), MAX_RETRY_ATTEMPTS is spent"
    late = decide_retry(Cause.UNAVAILABLE, BUDGET, failures=300, failing_for=90000)
    assert late.reason == "dead-lettered: failing for 90000s, past the 86400s retry window"
    assert decide_retry(Cause.RATE_LIMITED, BUDGET, failures=1, retry_after=2).reason == (
        "retry in 2.0s (rate_limited, not an attempt)"
    )
