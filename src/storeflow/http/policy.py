"""Polite-HTTP policy: pure functions and value objects, no I/O, no clock.

Shared by every portal and API client: minimum interval per request kind plus
uniform jitter; a periodic break after N +/- j requests lasting D +/- j seconds;
conservative mode; exponential backoff with jitter; Retry-After honoured up to a
cap; transient vs permanent failure classification; and the one retry decision every
client applies after a failed attempt (`cause_of` says why it failed, `decide` what to do:
retry after N seconds, log in again, re-read the framework id, stop the source, or fail).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum


@dataclass(frozen=True)
class PolitePolicy:
    """The polite rate-limit settings per request kind ("search", "detail", ...): docs/hallmark.md, "Configuration"."""

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
    """Honour Retry-After up to ``cap``; past the cap the source is stopped, never hammered.

    The 429 rule of `decide`, for one 429 whose backoff would be ``fallback`` seconds.
    """
    policy = RetryPolicy(max_retries=1, rate_limit_backoff=Backoff(fallback, 1.0, fallback), retry_after_cap=cap)
    decision = decide(Cause.RATE_LIMITED, policy, attempt=1, retry_after=retry_after)
    return RetryAfterDecision(decision.delay, decision.action is Action.STOP, decision.reason)


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
    SESSION_EXPIRED = "session_expired"  # the session or its token is refused: log in again
    OUT_OF_SYNC = "out_of_sync"  # Aura's clientOutOfSync: the site was updated under the session


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


class Body(Enum):
    """What a client read in an answer's body, as far as retrying goes (the client reads; this module does not).

    A client reports a kind other than READABLE only when the body is what decides: Aura sends its
    session and framework events with HTTP 200 or 404 alike (docs/hallmark.md, "What real Aura
    sites say"), Hipoink its refusals with HTTP 200 and ``error_code != 0`` (docs/esl.md).
    """

    READABLE = "readable"  # the answer asked for, or a body nobody looked at
    LOGIN_PAGE = "login_page"  # a redirect to the login form, or the login page instead of the answer
    INVALID_SESSION = "invalid_session"  # the server says the session or its token is no longer valid
    OUT_OF_SYNC = "out_of_sync"  # Aura's clientOutOfSync: re-read the framework id (fwuid)
    MALFORMED = "malformed"  # truncated, garbled, HTML instead of JSON, no result for the action
    APP_ERROR = "app_error"  # the application refused the request (an Aura action ERROR, error_code != 0)


_BODY_CAUSES = {
    Body.LOGIN_PAGE: Cause.SESSION_EXPIRED,
    Body.INVALID_SESSION: Cause.SESSION_EXPIRED,
    Body.OUT_OF_SYNC: Cause.OUT_OF_SYNC,
    Body.MALFORMED: Cause.ANSWERED,  # sending again is safe: the request may not have been applied
    Body.APP_ERROR: Cause.PERMANENT,
}


def cause_of(
    status: int | None,
    body: Body = Body.READABLE,
    *,
    error: BaseException | None = None,
    session_statuses: frozenset[int] = frozenset(),
) -> Cause | None:
    """Why an attempt failed, None when it did not: ``status`` None means no answer (``error``: the exception).

    A 429 and the client's ``session_statuses`` (401 for Aura, 401/403 for the CRM portals) come
    first; then a body the client read decides, whatever the status; then the status (`failure_cause`).
    """
    if status is None:
        return Cause.UNAVAILABLE if error is None else cause_of_error(error)
    if status == 429:
        return Cause.RATE_LIMITED
    if status in session_statuses:
        return Cause.SESSION_EXPIRED
    if body is not Body.READABLE:
        return _BODY_CAUSES[body]
    failure = classify_status(status)
    if failure is None:
        return None
    return failure_cause(status, failure is not Failure.PERMANENT)


def cause_of_error(error: BaseException) -> Cause:
    """An attempt that got no answer: timeouts and connection errors are outages, anything else a refusal."""
    return Cause.UNAVAILABLE if classify_exception(error) is Failure.TRANSIENT else Cause.PERMANENT


@dataclass(frozen=True)
class Backoff:
    """initial * multiplier**(n-1) seconds before the n-th retry, at most ``maximum``."""

    initial: float = 1.0
    multiplier: float = 2.0
    maximum: float = 300.0

    def delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self.initial, self.multiplier, self.maximum)


@dataclass(frozen=True)
class RetryPolicy:
    """How one client retries; each client builds its own from its settings (see the clients' configs)."""

    max_retries: int = 3  # retryable failures of one call that are retried; the next one fails it
    backoff: Backoff = Backoff()
    rate_limit_backoff: Backoff | None = None  # a 429 without Retry-After (None: ``backoff``)
    retry_after_cap: float | None = 300.0  # a longer Retry-After stops the source (None: waited as given)
    retry_after_on_errors: bool = False  # a 503's Retry-After lengthens the backoff too (else only a 429's counts)
    count_outages: bool = True  # no answer, 503 and 429 count against max_retries (else only the window bounds them)
    window: float | None = None  # seconds since the first failure after which nothing is retried
    max_resyncs: int = 2


class Action(Enum):
    RETRY = "retry"  # try again after ``delay`` seconds
    REAUTHENTICATE = "reauthenticate"  # log in again, then repeat the call
    RESYNC = "resync"  # re-read the site's framework id (Aura fwuid), then repeat the call
    STOP = "stop"  # stop this source now (the server asks for a longer pause than we wait); resumable
    FAIL = "fail"  # give up this call or item


@dataclass(frozen=True)
class Decision:
    action: Action
    delay: float = 0.0  # seconds before the next attempt (RETRY only)
    reason: str = ""
    spent: str | None = None  # FAIL because the budget ran out: "attempts" or "window" (None: refused)

    @property
    def retry(self) -> bool:
        return self.action is Action.RETRY


def decide(
    cause: Cause,
    policy: RetryPolicy,
    *,
    attempt: int,
    counted: int | None = None,
    failing_for: float = 0.0,
    retry_after: float | None = None,
    reauthenticated: bool = False,
    resynced: int = 0,
) -> Decision:
    """The one retry decision of every client (Hallmark's Aura client, the CRM portals, the ESL worker).

    ``attempt``: the failed attempts so far, this one included (the backoff exponent); ``counted``:
    the failures that count against ``max_retries``, this one included (default ``attempt``);
    ``failing_for``: seconds since the first failure; ``reauthenticated``: this call already logged
    in again; ``resynced``: framework-id re-reads this call already spent.
    """
    if cause is Cause.PERMANENT:
        return Decision(Action.FAIL, reason="refused: retrying cannot help")
    if cause is Cause.SESSION_EXPIRED:
        if reauthenticated:
            return Decision(Action.FAIL, reason="the session is refused again after logging in")
        return Decision(Action.REAUTHENTICATE, reason="the session expired: logging in again")
    if cause is Cause.OUT_OF_SYNC:
        if resynced >= policy.max_resyncs:
            return Decision(Action.FAIL, reason="still out of sync after re-reading the framework id")
        return Decision(Action.RESYNC, reason="the site was updated: re-reading the framework id")
    cap = policy.retry_after_cap
    if cause is Cause.RATE_LIMITED and retry_after is not None and cap is not None and retry_after > cap:
        reason = f"Retry-After {retry_after:.0f}s exceeds the cap of {cap:.0f}s; stopping this source"
        return Decision(Action.STOP, reason=reason)
    number = attempt if counted is None else counted
    counts = cause is Cause.ANSWERED or (policy.count_outages and cause is not Cause.LEASE_EXPIRED)
    if counts and number > policy.max_retries:
        reason = f"{number} retryable failure(s): the {policy.max_retries} retries are spent"
        return Decision(Action.FAIL, reason=reason, spent="attempts")
    if policy.window is not None and failing_for >= policy.window:
        reason = f"failing for {failing_for:.0f}s, past the {policy.window:.0f}s retry window"
        return Decision(Action.FAIL, reason=reason, spent="window")
    if cause is Cause.LEASE_EXPIRED:
        return Decision(Action.RETRY, 0.0, "the lease expired (not an attempt)")
    if cause is Cause.RATE_LIMITED:
        if retry_after is not None:
            return Decision(Action.RETRY, retry_after, f"Retry-After {retry_after:.1f}s")
        delay = (policy.rate_limit_backoff or policy.backoff).delay(attempt)
        return Decision(Action.RETRY, delay, f"no Retry-After; backing off {delay:.1f}s")
    delay = policy.backoff.delay(attempt)
    if retry_after is not None and policy.retry_after_on_errors:
        delay = max(delay, retry_after)
    return Decision(Action.RETRY, delay, f"{cause.value}: retry in {delay:.1f}s")


@dataclass(frozen=True)
class RetryBudget:
    """How long and how often a failing ESL item is tried again (docs/esl.md, "Retries").

    ``max_attempts`` bounds the attempts the server answered with a retryable error; every
    transient failure is bounded by ``window`` seconds since the item first failed; our own
    backoff never exceeds ``max_delay`` (a server's Retry-After is honoured as given).
    """

    max_attempts: int = 3
    initial_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 300.0
    window: float = 86400.0

    @property
    def policy(self) -> RetryPolicy:
        """The `decide` policy: MAX_RETRY_ATTEMPTS counts attempts (retries + 1), only answered errors
        count, a server's Retry-After is honoured as given and lengthens the backoff of any error."""
        return RetryPolicy(
            max_retries=self.max_attempts - 1,
            backoff=Backoff(self.initial_delay, self.multiplier, self.max_delay),
            retry_after_cap=None,
            retry_after_on_errors=True,
            count_outages=False,
            window=self.window,
        )


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
    if cause is Cause.ANSWERED:
        answered += 1
    decision = decide(
        cause,
        budget.policy,
        attempt=max(1, failures),
        counted=answered,
        failing_for=failing_for,
        retry_after=retry_after,
    )
    if decision.action is not Action.RETRY:
        if decision.spent == "attempts":
            reason = f"dead-lettered: {answered} retryable error(s), MAX_RETRY_ATTEMPTS is spent"
        elif decision.spent == "window":
            reason = f"dead-lettered: {decision.reason}"
        else:  # the ESL worker's causes never ask to log in or resync: a refusal
            return RetryDecision("failed", 0.0, answered, "permanent error: dead-lettered, not retried")
        return RetryDecision("dead", 0.0, answered, reason)
    if cause is Cause.LEASE_EXPIRED:
        return RetryDecision("pending", 0.0, answered, "returned to the queue: the lease expired (not an attempt)")
    delay = decision.delay
    counted = f"attempt {answered} of {budget.max_attempts}" if cause is Cause.ANSWERED else "not an attempt"
    return RetryDecision("pending", delay, answered, f"retry in {delay:.1f}s ({cause.value}, {counted})")


# ---------------------------------------------------------------- request pacing


def next_slot(now: float, last: float | None, rate_per_second: float) -> float:
    """When the next request may start so requests are at least 1/rate apart."""
    if last is None or rate_per_second <= 0:
        return now
    return max(now, last + 1.0 / rate_per_second)
