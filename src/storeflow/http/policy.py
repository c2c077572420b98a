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
