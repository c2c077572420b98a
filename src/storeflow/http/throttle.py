"""The stateful side of the polite policy: remembers when requests happened and sleeps.

Clock and sleep are injected so tests (and benchmarks) can drive it; clients
call ``before(kind)`` right before each request and ``after_failure``/
``after_response`` to learn how long to back off.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from storeflow.http.policy import (
    PolitePolicy,
    break_length,
    interval_with_jitter,
    next_break_after,
    wait_before,
)
from storeflow.logs import get_logger

if TYPE_CHECKING:
    from storeflow.settings import Settings

log = get_logger("api")


@dataclass
class ThrottleStats:
    requests: int = 0
    breaks: int = 0
    slept: float = 0.0
    rate_limited: int = 0


@dataclass
class Throttle:
    """Enforces a `PolitePolicy` for one source (one portal session, one API client)."""

    policy: PolitePolicy
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic
    stats: ThrottleStats = field(default_factory=ThrottleStats)
    _last: float | None = None
    _until_break: int | None = None
    _not_before: float = 0.0

    def plan(self, kind: str) -> float:
        """Seconds to wait before a request of ``kind`` (records the request as made)."""
        now = self.clock()
        wait = wait_before(now, self._last, interval_with_jitter(self.policy, kind, self.rng))
        wait = max(wait, self._not_before - now)
        if self._until_break is None:
            self._until_break = next_break_after(self.policy, self.rng)
        if self._until_break > 0 and self.stats.requests > 0:
            self._until_break -= 1
            if self._until_break == 0:
                pause = break_length(self.policy, self.rng)
                self.stats.breaks += 1
                log.info("taking a break of %.1fs after %d requests", pause, self.stats.requests, event="break")
                wait = max(wait, pause)
                self._until_break = next_break_after(self.policy, self.rng)
        self.stats.requests += 1
        self.stats.slept += wait
        self._last = now + wait
        return wait

    def before(self, kind: str, sleep: Callable[[float], None] = time.sleep) -> None:
        wait = self.plan(kind)
        if wait > 0:
            sleep(wait)

    async def abefore(self, kind: str, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        wait = self.plan(kind)
        if wait > 0:
            await sleep(wait)

    def push_back(self, seconds: float) -> None:
        """After a 429 or backoff: the next request may not start before now + seconds."""
        self._not_before = max(self._not_before, self.clock() + seconds)

    async def aclose(self) -> None:
        """Release what the throttle holds (nothing here; the shared throttle's database connection)."""


def policy_from_settings(s: Settings) -> PolitePolicy:
    """Spec 000's environment settings as a policy."""
    return PolitePolicy(
        intervals={"detail": s.RATE_LIMIT_DETAIL_SECONDS, "search": s.RATE_LIMIT_SEARCH_SECONDS},
        jitter=s.RATE_LIMIT_JITTER_SECONDS,
        break_after=s.BREAK_AFTER_REQUESTS,
        break_after_jitter=s.BREAK_AFTER_JITTER,
        break_duration=s.BREAK_DURATION_SECONDS,
        break_jitter=s.BREAK_JITTER_SECONDS,
        conservative=s.CONSERVATIVE_MODE,
        retry_after_cap=s.RETRY_AFTER_CAP_SECONDS,
    )
