"""Rate limits shared through PostgreSQL (storeflow.http.shared): several holders, one key, one limit.

Each limiter runs in a thread of its own with its own connection, as separate processes would.
The assertions count the slots granted on the database clock, never wall time.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from storeflow.db.pool import PoolConfig
from storeflow.http.policy import PolitePolicy
from storeflow.http.quota import SlotAsk, peak_in_window
from storeflow.http.shared import SharedRate, SharedThrottle, SlotBook
from tests.integration.pgserver import private_server

pytestmark = pytest.mark.integration

KEY = "hipoink http://127.0.0.1:9"


def in_threads(count: int, work: Any) -> list[Any]:
    """Run ``work(n)`` (a coroutine function) in ``count`` threads, each with its own event loop."""
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            results[n] = asyncio.run(asyncio.wait_for(work(n), 120))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_three_holders_of_one_key_never_exceed_the_rate(db_url: str) -> None:
    rate, each = 100.0, 40

    async def take(n: int) -> list[float]:
        limit = SharedRate(SlotBook(db_url, PoolConfig(), f"holder-{n}"), KEY, rate, lease_seconds=0.1)
        try:
            for _ in range(each):
                await limit.acquire()
        finally:
            await limit.aclose()
            await limit.book.aclose()
        return limit.granted

    grants = in_threads(3, take)
    assert [len(g) for g in grants] == [each] * 3
    slots = sorted(s for g in grants for s in g)
    assert len(set(slots)) == len(slots)
    assert min(b - a for a, b in itertools.pairwise(slots)) >= 1 / rate - 1e-6
    assert peak_in_window(slots, 1.0) <= rate + 1
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        row = conn.execute("SELECT granted, holder FROM rate_limits WHERE key = %s", (KEY,)).fetchone()
    assert row is not None and row["granted"] >= 3 * each and row["holder"].startswith("holder-")


def test_a_process_alone_pays_one_round_trip_per_batch_not_per_request(db_url: str) -> None:
    async def take() -> SharedRate:
        limit = SharedRate(SlotBook(db_url, PoolConfig(), "alone"), KEY, 50.0, lease_seconds=0.4)
        try:
            for _ in range(40):
                await limit.acquire()
        finally:
            await limit.aclose()
            await limit.book.aclose()
        return limit

    limit = asyncio.run(take())
    assert len(limit.granted) == 40
    assert limit.book.round_trips < 20  # a batch is 20 slots: about 3 round trips when nothing is missed


def test_a_dead_holders_slots_pass_and_the_survivor_gets_the_whole_rate(db_url: str) -> None:
    gap = 0.05

    async def scenario() -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        dead, survivor = SlotBook(db_url, PoolConfig(), "dead"), SlotBook(db_url, PoolConfig(), "survivor")
        taken = await dead.grant(KEY, SlotAsk(gap, 10))
        await dead.aclose()  # it took half a second of slots and vanished
        first = await survivor.grant(KEY, SlotAsk(gap, 10))
        second = await survivor.grant(KEY, SlotAsk(gap, 10))
        await survivor.aclose()
        return taken.db_slots, first.db_slots, second.db_slots

    taken, first, second = asyncio.run(scenario())
    assert first[0] == pytest.approx(taken[-1] + gap)  # nothing to wait for but the dead one's slots
    both = first + second
    assert [b - a for a, b in itertools.pairwise(both)] == pytest.approx([gap] * 19)


def test_a_frozen_holder_does_not_keep_the_row_locked(db_url: str) -> None:
    async def scenario() -> tuple[float, ...]:
        frozen, other = SlotBook(db_url, PoolConfig(), "frozen"), SlotBook(db_url, PoolConfig(), "other")
        await frozen.grant(KEY, SlotAsk(0.01, 1))
        conn = await frozen._connection()
        await conn.execute("BEGIN")
        await conn.execute("SELECT * FROM rate_limits WHERE key = %s FOR UPDATE", (KEY,))
        # the holder stops here, mid-grant, row locked: the server ends its session after 5 s idle
        got = await asyncio.wait_for(other.grant(KEY, SlotAsk(0.01, 1)), 30)
        await other.aclose()
        await frozen.aclose()
        return got.db_slots

    assert len(asyncio.run(scenario())) == 1


def test_one_portal_accounts_pacing_and_breaks_hold_across_throttles(db_url: str) -> None:
    policy = PolitePolicy(
        intervals={"detail": 0.05, "search": 0.05},
        jitter=0.0,
        break_after=3,
        break_after_jitter=0,
        break_duration=0.2,
        break_jitter=0.0,
    )
    key = "hallmark http://127.0.0.1:9 someone"

    async def fetch(n: int) -> list[float]:
        throttle = SharedThrottle(policy, book=SlotBook(db_url, PoolConfig(), f"extract-{n}"), key=key)
        try:
            for _ in range(5):
                await throttle.abefore("detail")
        finally:
            await throttle.aclose()
        return throttle.granted

    grants = in_threads(2, fetch)
    slots = sorted(s for g in grants for s in g)
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert len(slots) == 10
    assert min(gaps) >= 0.05 - 1e-6
    # a break before the 4th, 7th and 10th request of the account, whichever extraction sends it
    assert [i for i, g in enumerate(gaps) if g >= 0.2 - 1e-6] == [2, 5, 8]


POLITE = PolitePolicy(intervals={"detail": 0.1, "search": 0.1}, jitter=0.0, break_after=0)
HALLMARK_KEY = "hallmark http://127.0.0.1:9 someone"


def test_a_throttle_late_for_its_slot_leaves_it_and_takes_the_next(db_url: str) -> None:
    """A late request would land next to the other process's punctual one (found by bench/scale.py 2b)."""

    slow = PolitePolicy(intervals={"detail": 0.5, "search": 0.5}, jitter=0.0, break_after=0)  # room for a slow CI

    async def scenario() -> tuple[SharedThrottle, float]:
        other = SharedThrottle(slow, book=SlotBook(db_url, PoolConfig(), "other"), key=HALLMARK_KEY)
        late = SharedThrottle(slow, book=SlotBook(db_url, PoolConfig(), "late"), key=HALLMARK_KEY)
        sleeps = 0

        async def oversleep(seconds: float) -> None:  # the first wait runs 0.3 s late (a stalled event loop)
            nonlocal sleeps
            sleeps += 1
            await asyncio.sleep(seconds + (0.3 if sleeps == 1 else 0.0))

        try:
            await other.abefore("detail")
            await late.abefore("detail", sleep=oversleep)
        finally:
            await other.aclose()
            await late.aclose()
        return late, other.granted[0]

    late, first = asyncio.run(scenario())
    assert late.dropped == 1
    assert late.granted == [pytest.approx(first + 1.0, abs=1e-6)]  # the slot after the missed one


def test_a_pushed_back_throttle_takes_its_slot_after_the_wait_not_before(db_url: str) -> None:
    """A slot taken before a 429's wait and sent after it would fall on the others' first slot after it."""

    async def scenario() -> list[float]:
        told = SharedThrottle(POLITE, book=SlotBook(db_url, PoolConfig(), "told"), key=HALLMARK_KEY)
        other = SharedThrottle(POLITE, book=SlotBook(db_url, PoolConfig(), "other"), key=HALLMARK_KEY)
        sent: list[float] = []

        async def retry() -> None:  # as the client does: its 429 said Retry-After: 0.3, then it asks again
            told.push_back(0.3)  # the others hear of it through the table, in the background
            await told.abefore("detail")
            sent.append(time.monotonic())

        async def send() -> None:
            await asyncio.sleep(0.05)
            await other.abefore("detail")
            sent.append(time.monotonic())

        try:
            await asyncio.gather(retry(), send())
        finally:
            await told.aclose()
            await other.aclose()
        return sorted(sent)

    sent = asyncio.run(scenario())
    assert sent[1] - sent[0] >= 0.06  # one interval (0.1 s) apart, less the late-slot tolerance and scheduling


def test_a_retry_after_from_one_process_holds_back_the_others(db_url: str) -> None:
    key = "hallmark http://127.0.0.1:9 someone"

    async def scenario() -> tuple[float, float]:
        told, other = SlotBook(db_url, PoolConfig(), "told"), SlotBook(db_url, PoolConfig(), "other")
        await told.push_back(key, 30.0)
        got = await other.grant(key, SlotAsk(0.1, 1))
        await told.aclose()
        await other.aclose()
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            rows = await (await conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8")).fetchall()
        return got.db_slots[0], rows[0][0]

    slot, now = asyncio.run(scenario())
    assert slot >= now + 29


def test_a_database_restart_costs_no_grant() -> None:
    with private_server() as pg:  # migrated

        async def scenario() -> tuple[tuple[float, ...], tuple[float, ...]]:
            book = SlotBook(pg.url, PoolConfig(), "restarted")
            before = await book.grant(KEY, SlotAsk(0.01, 2))
            pg.stop()
            pg.start()
            after = await book.grant(KEY, SlotAsk(0.01, 2))  # the stale connection is replaced, not raised
            await book.aclose()
            return before.db_slots, after.db_slots

        before, after = asyncio.run(scenario())
    assert len(after) == 2 and after[0] >= before[-1] + 0.01
