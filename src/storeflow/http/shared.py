"""Rate limits shared through PostgreSQL: the thin I/O around `storeflow.http.quota`.

`SlotBook` takes slots from a `rate_limits` row (one locked read, one update, one commit);
`SharedRate` keeps a few seconds' worth of slots in hand for one key so that a process alone pays
one database round trip per batch, not per request; `SharedThrottle` is the polite Hallmark
throttle with its interval, jitter and breaks counted per portal account instead of per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from storeflow.db.pool import PoolConfig, connect_async
from storeflow.http.policy import break_length, interval_with_jitter, next_break_after
from storeflow.http.quota import SlotAsk, SlotGrant, SlotState, batch_size, clock_offset, grant_slots, usable
from storeflow.http.throttle import Throttle, policy_from_settings
from storeflow.logs import get_logger

if TYPE_CHECKING:
    from storeflow.settings import Settings

log = get_logger("api")

SCOPES = ("global", "process")

# the row is locked by the INSERT (a new key) or by its ON CONFLICT update (an existing one); the
# clock is read after the lock is held, so slots are planned against the latest grant
LOCK_ROW = """
INSERT INTO rate_limits (key) VALUES (%(key)s)
ON CONFLICT (key) DO UPDATE SET key = EXCLUDED.key
RETURNING last_at, granted, break_at, not_before, extract(epoch FROM clock_timestamp())::float8 AS now
"""
SAVE_ROW = """
UPDATE rate_limits
   SET last_at = %(last_at)s, granted = %(granted)s, break_at = %(break_at)s, not_before = %(not_before)s,
       holder = %(holder)s, updated_at = now()
 WHERE key = %(key)s
"""
PUSH_BACK = """
INSERT INTO rate_limits (key, not_before, holder)
VALUES (%(key)s, extract(epoch FROM clock_timestamp()) + %(seconds)s, %(holder)s)
ON CONFLICT (key) DO UPDATE
   SET not_before = greatest(rate_limits.not_before, EXCLUDED.not_before), holder = EXCLUDED.holder,
       updated_at = now()
"""
LATE_SLOT_ATTEMPTS = 3  # a process late for this many slots in a row sends on the last one
OFFSET_MAX_AGE = 30.0  # seconds a clock reading is trusted (the two clocks may drift apart slowly)
# a holder that stops answering mid-grant (frozen, cut off) must not keep the row locked
_SESSION_SETUP = "SET idle_in_transaction_session_timeout = '5s'"


@dataclass
class Granted:
    """Slots on the database clock, and the same slots on this process's monotonic clock."""

    db_slots: tuple[float, ...]
    local_slots: tuple[float, ...]


class SlotBook:
    """One connection to the `rate_limits` table; reconnects after a lost connection."""

    def __init__(self, url: str, config: PoolConfig, holder: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.config = config
        self.holder = holder
        self.clock = clock
        self.round_trips = 0
        self._offset: tuple[float, float, float] | None = None  # (round trip, offset, when) of the best reading
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            # a session-level SET behind a transaction pooler would land on whichever server connection
            # the pooler lent and stay there for its next client: there, take the direct URL for it, or
            # (without one) leave the guard to the pooler's own idle_transaction_timeout
            session_url = self.config.listen_url(self.url)
            conn = await connect_async(session_url or self.url, self.config, name="rate-limit", autocommit=True)
            if session_url is not None:
                await conn.execute(_SESSION_SETUP)
            self._conn = conn
        return self._conn

    async def _run(self, step: Callable[[psycopg.AsyncConnection[dict[str, Any]]], Awaitable[Any]]) -> Any:
        """Run ``step``; a connection a database restart left stale is replaced and ``step`` run once more.

        Every step is safe to repeat: a grant whose commit was lost only leaves its slots unused.
        """
        async with self._lock:
            for attempt in (1, 2):
                fresh = self._conn is None or self._conn.closed or self._conn.broken
                try:
                    conn = await self._connection()
                    self.round_trips += 1
                    return await step(conn)
                except (psycopg.OperationalError, OSError):
                    await self.aclose()
                    if fresh or attempt == 2:
                        raise

    async def grant(self, key: str, ask: SlotAsk) -> Granted:
        """Take ``ask.count`` slots of ``key`` (created on first use)."""

        async def step(conn: psycopg.AsyncConnection[dict[str, Any]]) -> Granted:
            async with conn.transaction():
                sent = self.clock()
                row = await (await conn.execute(LOCK_ROW, {"key": key})).fetchone()
                received = self.clock()
                assert row is not None
                state = SlotState(row["last_at"], row["granted"], row["break_at"], row["not_before"])
                grant: SlotGrant = grant_slots(state, row["now"], ask)
                await conn.execute(SAVE_ROW, {"key": key, "holder": self.holder, **_state_params(grant.state)})
            offset = self._best_offset(received - sent, clock_offset(sent, received, row["now"]), received)
            return Granted(grant.slots, tuple(s - offset for s in grant.slots))

        result: Granted = await self._run(step)
        return result

    def _best_offset(self, round_trip: float, offset: float, now: float) -> float:
        """The offset read with the shortest round trip in the last half minute (the most exact one)."""
        best = self._offset
        if best is None or round_trip <= best[0] or now - best[2] > OFFSET_MAX_AGE:
            self._offset = best = (round_trip, offset, now)
        return best[1]

    async def push_back(self, key: str, seconds: float) -> None:
        """Nobody's next slot of ``key`` starts within ``seconds`` (a 429's Retry-After)."""

        async def step(conn: psycopg.AsyncConnection[dict[str, Any]]) -> None:
            await conn.execute(PUSH_BACK, {"key": key, "seconds": seconds, "holder": self.holder})

        await self._run(step)

    async def rows(self, query: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """A read on the same connection (the store-level limits of the ESL worker)."""

        async def step(conn: psycopg.AsyncConnection[dict[str, Any]]) -> list[dict[str, Any]]:
            return await (await conn.execute(query, params or {})).fetchall()

        result: list[dict[str, Any]] = await self._run(step)
        return result

    async def aclose(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await self._conn.close()
            self._conn = None


def _state_params(state: SlotState) -> dict[str, Any]:
    return {
        "last_at": state.last_at,
        "granted": state.granted,
        "break_at": state.break_at,
        "not_before": state.not_before,
    }


class SharedRate:
    """At most ``rate`` requests per second for ``key``, counted over every process that uses the key.

    Slots are reserved ``lease_seconds`` worth at a time and the next batch is fetched in the
    background once half of the batch in hand is used, so one process alone waits on the database
    once per batch. A slot this process was too late for is dropped, never used late.
    """

    def __init__(
        self,
        book: SlotBook,
        key: str,
        rate: float,
        lease_seconds: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.book = book
        self.key = key
        self.rate = rate
        self.gap = 1.0 / rate if rate > 0 else 0.0
        self.batch = batch_size(rate, lease_seconds)
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.granted: list[float] = []  # the database-clock slots this instance used (tests, benches)
        self.dropped = 0
        self._slots: deque[tuple[float, float]] = deque()  # (local, database) times
        self._filling: asyncio.Future[None] | None = None
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for this process's next slot."""
        async with self._lock:
            while True:
                self._drop_missed()
                if self._slots:
                    local, db = self._slots.popleft()
                    break
                await self._fill_now()
            self._maybe_prefetch()
        self.granted.append(db)
        wait = local - self.clock()
        if wait > 0:
            await asyncio.sleep(wait)

    async def ready(self) -> None:
        """Wait until the next slot in hand (if any) is nearly due, without taking it.

        Half a gap early (at most 0.1 s), so that what the caller does before `acquire` (the worker
        claims its batch) is done by the slot instead of making it late.
        """
        self._drop_missed()
        if self._slots:
            wait = self._slots[0][0] - min(0.5 * self.gap, 0.1) - self.clock()
            if wait > 0:
                await asyncio.sleep(wait)

    def push_back(self, seconds: float) -> None:
        """After a 429: drop the slots in hand before then and tell every other process (in the background)."""
        until = self.clock() + seconds
        while self._slots and self._slots[0][0] < until:
            self._slots.popleft()
        task = asyncio.ensure_future(self.book.push_back(self.key, seconds))
        task.add_done_callback(_log_failure)

    async def aclose(self) -> None:
        """Stop a batch being fetched in the background (the caller closes the book)."""
        if self._filling is not None and not self._filling.done():
            self._filling.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error, OSError):
                await self._filling

    def _drop_missed(self) -> None:
        now = self.clock()
        while self._slots and not usable(self._slots[0][0], now, self.gap):
            self._slots.popleft()
            self.dropped += 1

    async def _fill_now(self) -> None:
        if self._filling is None or self._filling.done():
            self._filling = asyncio.ensure_future(self._fill())
        filling = self._filling
        await filling

    def _maybe_prefetch(self) -> None:
        if self._filling is not None and not self._filling.done():
            return
        horizon = (self._slots[-1][0] - self.clock()) if self._slots else 0.0
        if len(self._slots) * 2 <= self.batch and horizon < self.lease_seconds:
            self._filling = asyncio.ensure_future(self._fill())
            self._filling.add_done_callback(_log_failure)

    async def _fill(self) -> None:
        got = await self.book.grant(self.key, SlotAsk(self.gap, self.batch))
        self._slots.extend(zip(got.local_slots, got.db_slots, strict=True))


def _log_failure(task: asyncio.Future[Any]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.warning("shared rate limit: %s (the next request retries)", exc, event="rate_limit")


@dataclass
class SharedThrottle(Throttle):
    """The polite throttle of one portal account, shared by every process through `rate_limits`.

    Each request takes one slot: no sooner than its (jittered) interval after the account's last
    request from any process, and the breaks fall every N +/- j requests of the account.
    """

    book: SlotBook | None = None
    key: str = ""
    granted: list[float] = field(default_factory=list)
    dropped: int = 0  # slots left unused because this process was too late for them

    async def abefore(self, kind: str, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """Wait for this account's next slot, taken no sooner than this process may send.

        Two rules keep a late request from landing next to another process's punctual one (the portal
        then sees two requests a few milliseconds apart, and a bucket with no room left answers 429):
        a push-back (a 429's Retry-After) is waited out before the slot is taken, not after, where it
        would move a slot granted earlier onto the first slot the others get after it; and a slot this
        process is too late for (its grant or its sleep ran late) is left unused and a new one taken.
        """
        assert self.book is not None
        ask = SlotAsk(
            interval_with_jitter(self.policy, kind, self.rng),
            1,
            next_break_after(self.policy, self.rng),
            break_length(self.policy, self.rng),
        )
        held = self._not_before - self.clock()
        if held > 0:
            self.stats.slept += held
            await sleep(held)
        for attempt in range(1, LATE_SLOT_ATTEMPTS + 1):
            got = await self.book.grant(self.key, ask)
            wait = got.local_slots[0] - self.clock()
            if wait > 0:
                self.stats.slept += wait
                await sleep(wait)
            if attempt == LATE_SLOT_ATTEMPTS or usable(got.local_slots[0], self.clock(), ask.gap):
                break
            self.dropped += 1
        self.granted.append(got.db_slots[0])
        self.stats.requests += 1

    def before(self, kind: str, sleep: Callable[[float], None] = time.sleep) -> None:
        raise TypeError("a SharedThrottle paces async clients only (abefore)")

    def push_back(self, seconds: float) -> None:
        super().push_back(seconds)
        if self.book is not None:
            task = asyncio.ensure_future(self.book.push_back(self.key, seconds))
            task.add_done_callback(_log_failure)

    async def aclose(self) -> None:
        if self.book is not None:
            await self.book.aclose()


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def hallmark_key(base_url: str, username: str) -> str:
    return f"hallmark {base_url.rstrip('/')} {username.strip().lower()}"


def account_throttle(settings: Settings, db_url: str, db: PoolConfig) -> Throttle:
    """The Hallmark throttle RATE_LIMIT_SCOPE asks for: shared per portal account (global) or this process's."""
    policy = policy_from_settings(settings)
    if settings.RATE_LIMIT_SCOPE != "global":
        return Throttle(policy)
    key = hallmark_key(settings.BASE_URL, settings.HALLMARK_USERNAME or "")
    return SharedThrottle(policy, book=SlotBook(db_url, db, process_name()), key=key)
