"""Polite-HTTP policy: pure functions and value objects, no I/O, no clock.

Shared by every portal and API client: minimum interval per request kind plus
uniform jitter; a periodic break after N +/- j requests lasting D +/- j seconds;
conservative mode; exponential backoff with jitter; Retry-After honoured up to a
cap; transient vs permanent failure classification.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum


@dataclass(frozen=True)
class PolitePolicy:
    """Spec 000's rate-limit settings, per request kind ("search", "detail", ...)."""

    intervals: dict[str, float] = field(default_factory=lambda: {"detail": 2.5, "search": 5.0})
    jitter: float = 0.5
    break_after: int = 25
    break_after_jitter: int = 5
    break_duration: float = 60.0
    break_jitter: float = 15.0
    conservative: bool = False
    retry_after_cap: float = 300.0

    def effective(self) -> PolitePolicy:
        """Conservative mode: delays and break length x2, requests between breaks halved."""
        if not self.conservative:
            return self
        return replace(
            self,
            intervals={k: v * 2 for k, v in self.intervals.items()},
            jitter=self.jitter * 2,
            break_duration=self.break_duration * 2,
            break_jitter=self.break_jitter * 2,
            break_after=max(1, self.break_after // 2) if self.break_after else 0,
            break_after_jitter=self.break_after_jitter // 2,
            conservative=False,
        )

    def interval(self, kind: str) -> float:
        eff = self.effective()
        return eff.intervals.get(kind, max(eff.intervals.values(), default=0.0))


def interval_with_jitter(policy: PolitePolicy, kind: str, rng: random.Random) -> float:
    """The minimum gap before the next request of ``kind``: base interval + U(0, jitter)."""
    eff = policy.effective()
    base = policy.interval(kind)
    return base + (rng.uniform(0, eff.jitter) if eff.jitter > 0 else 0.0)


def next_break_after(policy: PolitePolicy, rng: random.Random) -> int:
    """How many requests until the next break: N +/- j (0 disables breaks)."""
    eff = policy.effective()
    if eff.break_after <= 0:
        return 0
    spread = eff.break_after_jitter
    return max(1, eff.break_after + (rng.randint(-spread, spread) if spread else 0))


def break_length(policy: PolitePolicy, rng: random.Random) -> float:
    """How long a break lasts: D +/- j seconds, never negative."""
    eff = policy.effective()
    spread = eff.break_jitter
    return max(0.0, eff.break_duration + (rng.uniform(-spread, spread) if spread else 0.0))


def wait_before(now: float, last_request_at: float | None, gap: float) -> float:
    """Seconds to sleep so that at least ``gap`` passes since the previous request."""
    if last_request_at is None:
        return 0.0
    return max(0.0, last_request_at + gap - now)


def backoff_delay(
    attempt: int,
    initial: float = 1.0,
    multiplier: float = 2.0,
    maximum: float = 300.0,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> float:
    """Delay before retry number ``attempt`` (1-based): initial * multiplier**(attempt-1), capped.

    ``jitter`` is a fraction (0.1 = +/-10%) applied after the cap.
    """
    if attempt < 1:
        return 0.0
    delay = min(maximum, initial * (multiplier ** (attempt - 1)))
    if jitter and rng is not None:
        delay *= 1 + rng.uniform(-jitter, jitter)
    return max(0.0, delay)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


@dataclass(frozen=True)
class RetryAfterDecision:
    wait: float
    stop: bool
    reason: str


def decide_retry_after(retry_after: float | None, cap: float, fallback: float) -> RetryAfterDecision:
    """Honour Retry-After up to ``cap``; past the cap the source is stopped, never hammered."""
    if retry_after is None:
        return RetryAfterDecision(fallback, False, f"no Retry-After; backing off {fallback:.1f}s")
    if retry_after > cap:
        return RetryAfterDecision(
            0.0, True, f"Retry-After {retry_after:.0f}s exceeds the cap of {cap:.0f}s; stopping this source"
        )
    return RetryAfterDecision(retry_after, False, f"Retry-After {retry_after:.1f}s")


class Failure(Enum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    RATE_LIMITED = "rate_limited"


TRANSIENT_EXCEPTIONS = (
    "TimeoutException",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "ConnectError",
    "ReadError",
    "WriteError",
    "RemoteProtocolError",
    "NetworkError",
    "TimeoutError",
    "ConnectionError",
    "ConnectionResetError",
    "ConnectionRefusedError",
    "IncompleteRead",
)


def classify_status(status: int) -> Failure | None:
    """None for success; 429 rate-limited; 408/5xx transient; other 4xx permanent."""
    if status < 400:
        return None
    if status == 429:
        return Failure.RATE_LIMITED
    if status == 408 or status >= 500:
        return Failure.TRANSIENT
    return Failure.PERMANENT


def classify_exception(exc: BaseException) -> Failure:
    """Timeouts and connection errors are transient; anything else is permanent."""
    for klass in type(exc).__mro__:
        if klass.__name__ in TRANSIENT_EXCEPTIONS:
            return Failure.TRANSIENT
    return Failure.PERMANENT


# ---------------------------------------------------------------- one retry decision per failed attempt


class Cause(Enum):
    """Why an attempt failed, as far as the retry budget is concerned."""

    PERMANENT = "permanent"  # refused (4xx, an application error code): retrying cannot help
    ANSWERED = "answered"  # the server answered with a retryable error (500, 502, a garbled 2xx)
    UNAVAILABLE = "unavailable"  # no real answer: timeout, connection error, 503, 504, 408
    RATE_LIMITED = "rate_limited"  # 429: the server asks us to wait
    LEASE_EXPIRED = "lease_expired"  # our own worker vanished mid-attempt; the server said nothing


# 503/504/408 come from a server (or its gateway) that is down or overloaded, not from one that
# looked at the request: like timeouts, they say nothing about the request itself
_UNAVAILABLE_STATUSES = frozenset({408, 503, 504})


def failure_cause(http_status: int | None, transient: bool) -> Cause:
    """The cause of a failed attempt from its HTTP status (None: no answer) and its transience."""
    if not transient:
        return Cause.PERMANENT
    if http_status is None or http_status in _UNAVAILABLE_STATUSES:
        return Cause.UNAVAILABLE
    if http_status == 429:
        return Cause.RATE_LIMITED
    return Cause.ANSWERED


@dataclass(frozen=True)
class RetryBudget:
    """How long and how often a failing item is tried again (spec 002's settings plus two of ours).

    ``max_attempts`` bounds the attempts the server answered with a retryable error; every
    transient failure is bounded by ``window`` seconds since the item first failed; our own
    backoff never exceeds ``max_delay`` (a server's Retry-After is honoured as given).
    """

    max_attempts: int = 3
    initial_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 300.0
    window: float = 86400.0


@dataclass(frozen=True)
class RetryDecision:
    state: str  # pending (try again) | failed (permanent) | dead (budget spent)
    delay: float  # seconds before the next attempt (pending only)
    answered: int  # retryable errors answered so far, this attempt included
    reason: str  # what happened to the item, for the log

    @property
    def retry(self) -> bool:
        return self.state == "pending"


def decide_retry(
    cause: Cause,
    budget: RetryBudget,
    *,
    failures: int,
    answered: int = 0,
    failing_for: float = 0.0,
    retry_after: float | None = None,
) -> RetryDecision:
    """What to do with an item whose attempt just failed.

    ``failures``: failed attempts of the item so far, this one included (the backoff exponent);
    ``answered``: retryable errors the server answered before this attempt; ``failing_for``:
    seconds since the item first failed (0 for a first failure).
    """
    if cause is Cause.PERMANENT:
        return RetryDecision("failed", 0.0, answered, "permanent error: dead-lettered, not retried")
    if cause is Cause.ANSWERED:
        answered += 1
        if answered >= budget.max_attempts:
            return RetryDecision(
                "dead", 0.0, answered, f"dead-lettered: {answered} retryable error(s), MAX_RETRY_ATTEMPTS is spent"
            )
    if failing_for >= budget.window:
        reason = f"dead-lettered: failing for {failing_for:.0f}s, past the {budget.window:.0f}s retry window"
        return RetryDecision("dead", 0.0, answered, reason)
    if cause is Cause.LEASE_EXPIRED:
        return RetryDecision("pending", 0.0, answered, "returned to the queue: the lease expired (not an attempt)")
    delay = backoff_delay(max(1, failures), budget.initial_delay, budget.multiplier, budget.max_delay)
    if retry_after is not None:
        delay = retry_after if cause is Cause.RATE_LIMITED else max(delay, retry_after)
    counted = f"attempt {answered} of {budget.max_attempts}" if cause is Cause.ANSWERED else "not an attempt"
    return RetryDecision("pending", delay, answered, f"retry in {delay:.1f}s ({cause.value}, {counted})")


# ---------------------------------------------------------------- request pacing


def next_slot(now: float, last: float | None, rate_per_second: float) -> float:
    """When the next request may start so requests are at least 1/rate apart."""
    if last is None or rate_per_second <= 0:
        return now
    return max(now, last + 1.0 / rate_per_second)
