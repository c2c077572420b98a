"""The sync worker: claims queue items, coalesces them per product, sends them to Hipoink in batches.

Woken by LISTEN/NOTIFY on a dedicated connection; polls every SYNC_WORKER_INTERVAL_SECONDS only as
a fallback (or sooner when a retry falls due). Any number of workers may run against one database:
claims use FOR UPDATE SKIP LOCKED, a heartbeat renews the lease of what a worker holds, and items
of a worker that vanished come back when their lease passes. Every attempt writes a sync_log row.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import psycopg

from storeflow.db.pool import PoolConfig, connect_async, connect_listener
from storeflow.esl import store as esl_store
from storeflow.esl.hipoink import HipoinkClient, Verdict
from storeflow.esl.ratelimit import SharedHipoinkLimiter
from storeflow.esl.store import ClaimedItem, ItemResult
from storeflow.esl.transform import chunks, coalesce, hipoink_product, validate_hipoink_product
from storeflow.http.policy import Cause, RetryBudget, backoff_delay, decide_retry, failure_cause, next_slot
from storeflow.logs import get_logger

if TYPE_CHECKING:
    from storeflow.settings import Settings

log = get_logger("esl")


@dataclass(frozen=True)
class WorkerConfig:
    """What a worker needs of the settings (built once by `from_settings`, never changed)."""

    batch_size: int = 200
    max_attempts: int = 3
    initial_delay: float = 1.0
    multiplier: float = 2.0
    max_delay: float = 300.0
    rate_per_second: float = 10.0
    poll_interval: float = 5.0
    lease_seconds: float = 60.0
    concurrency: int = 1
    mode: str = "batch"  # batch: create_multiple; single: one product/create per product
    request_timeout: float = 30.0
    retry_window: float = 86400.0
    rate_scope: str = "process"  # global: HIPOINK_RATE_LIMIT_PER_SECOND holds across processes (esl.ratelimit)
    rate_lease_seconds: float = 0.5
    db: PoolConfig = field(default_factory=PoolConfig)
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:4]}")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> WorkerConfig:
        values: dict[str, Any] = {
            "batch_size": settings.HIPOINK_BATCH_SIZE,
            "max_attempts": settings.MAX_RETRY_ATTEMPTS,
            "initial_delay": settings.RETRY_INITIAL_DELAY_SECONDS,
            "multiplier": settings.RETRY_BACKOFF_MULTIPLIER,
            "rate_per_second": settings.HIPOINK_RATE_LIMIT_PER_SECOND,
            "poll_interval": settings.SYNC_WORKER_INTERVAL_SECONDS,
            "lease_seconds": settings.config.esl.lease_seconds,
            "request_timeout": settings.REQUEST_TIMEOUT_SECONDS,
            "max_delay": settings.RETRY_MAX_DELAY_SECONDS,
            "retry_window": settings.RETRY_WINDOW_SECONDS,
            "rate_scope": settings.RATE_LIMIT_SCOPE,
            "rate_lease_seconds": settings.RATE_LIMIT_LEASE_SECONDS,
            "db": PoolConfig.from_settings(settings),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def retry_delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self.initial_delay, self.multiplier, self.max_delay)

    @property
    def budget(self) -> RetryBudget:
        return RetryBudget(self.max_attempts, self.initial_delay, self.multiplier, self.max_delay, self.retry_window)


class RateLimiter:
    """At most ``rate`` requests per second from this process (all lanes share it)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._last: float | None = None
        self._not_before = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self, store: str | None = None) -> None:
        async with self._lock:
            now = time.monotonic()
            slot = max(next_slot(now, self._last, self.rate), self._not_before)
            self._last = slot
        if slot > now:
            await asyncio.sleep(slot - now)

    async def ready(self) -> None:
        """Wait until a request could start, without taking the slot.

        Lanes wait here before claiming, so items that arrive meanwhile join the batch instead of
        waiting, claimed, for the rate limit.
        """
        now = time.monotonic()
        slot = max(next_slot(now, self._last, self.rate), self._not_before)
        if slot > now:
            await asyncio.sleep(slot - now)

    def push_back(self, seconds: float, store: str | None = None) -> None:
        """After a 429 with Retry-After: nothing is sent before then."""
        self._not_before = max(self._not_before, time.monotonic() + seconds)

    async def aclose(self) -> None:
        """Nothing to release (the shared limiter closes its connection)."""


@dataclass
class WorkerStats:
    claimed: int = 0
    requests: int = 0
    products_sent: int = 0
    results: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "requests": self.requests,
            "products_sent": self.products_sent,
            **{f"items_{k}": v for k, v in sorted(self.results.items())},
        }


def _now() -> datetime:
    return datetime.now(UTC)


class Worker:
    """One worker process: ``concurrency`` claim/send lanes, a listener, a heartbeat."""

    def __init__(self, db_url: str, client: HipoinkClient, config: WorkerConfig) -> None:
        self.db_url = db_url
        self.client = client
        self.config = config
        self.limiter: RateLimiter | SharedHipoinkLimiter = (
            SharedHipoinkLimiter(
                db_url, config.db, config.worker_id, client.base_url, config.rate_per_second, config.rate_lease_seconds
            )
            if config.rate_scope == "global"
            else RateLimiter(config.rate_per_second)
        )
        self.stats = WorkerStats()
        self.wake = asyncio.Event()
        self.stop = asyncio.Event()
        self.held: set[int] = set()
        self._renewed_at = 0.0  # when the lease of what this worker holds was last set (monotonic)
        self._last_reap = 0.0

    # ------------------------------------------------------------ running

    async def run(self, drain: bool = False, stop_after: float | None = None) -> WorkerStats:
        """Work until `stop` is set (or, with ``drain``, until no item is pending or in progress)."""
        log.info(
            "worker %s started (batch %d, %s mode, %.1f req/s per %s, lease %.0fs)",
            self.config.worker_id,
            self.config.batch_size,
            self.config.mode,
            self.config.rate_per_second,
            "server" if self.config.rate_scope == "global" else "process",
            self.config.lease_seconds,
            event="worker",
        )
        helpers = [
            asyncio.ensure_future(self._listen()),
            asyncio.ensure_future(self._heartbeat()),
        ]
        if stop_after is not None:
            helpers.append(asyncio.ensure_future(self._stop_later(stop_after)))
        try:
            lanes = [asyncio.ensure_future(self._lane(n, drain)) for n in range(max(1, self.config.concurrency))]
            await asyncio.gather(*lanes)
        finally:
            self.stop.set()
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.limiter.aclose()
        log.info("worker %s stopped: %s", self.config.worker_id, self.stats.as_dict(), event="worker")
        return self.stats

    async def _stop_later(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.stop.set()
        self.wake.set()

    async def _connect(self, autocommit: bool = False) -> psycopg.AsyncConnection[dict[str, Any]]:
        return await connect_async(self.db_url, self.config.db, name="esl-worker", autocommit=autocommit)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the worker is told to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def _listen(self) -> None:
        """Set `wake` on every NOTIFY; reconnect after a lost connection (polling covers the gap)."""
        delay = 0.5
        while not self.stop.is_set():
            try:
                listener = await connect_listener(self.db_url, self.config.db, name="esl-worker")
                if listener is None:
                    log.info(
                        "no LISTEN behind a transaction pooler without DATABASE_DIRECT_URL: polling", event="listen"
                    )
                    return
                async with listener as conn:
                    await conn.execute(esl_store.LISTEN)
                    delay = 0.5
                    self.wake.set()  # anything enqueued before LISTEN took effect
                    async for _ in conn.notifies():
                        self.wake.set()
            except (psycopg.Error, OSError) as exc:
                log.warning("listener connection lost (%s); polling until it is back", exc, event="listen")
                await self._pause(delay)
                delay = min(delay * 2, self.config.db.reconnect_timeout)

    async def _heartbeat(self) -> None:
        """Renew the lease of every item this worker holds, every third of the lease."""
        interval = max(0.2, self.config.lease_seconds / 3)
        while not self.stop.is_set():
            await asyncio.sleep(interval)
            if not self.held:
                continue
            try:
                started = time.monotonic()
                async with await self._connect(autocommit=True) as conn:
                    await esl_store.renew_leases(
                        conn, worker=self.config.worker_id, lease=self.config.lease_seconds, ids=list(self.held)
                    )
                self._renewed_at = started
            except psycopg.Error as exc:
                log.warning("heartbeat failed: %s", exc, event="lease")

    async def _lane(self, number: int, drain: bool) -> None:
        conn: psycopg.AsyncConnection[dict[str, Any]] | None = None
        connected = False  # the last connection worked: after a restart it is stale, reconnect at once
        try:
            while not self.stop.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = await self._connect()
                    await self.limiter.ready()
                    self.wake.clear()
                    await self._reap(conn)
                    items = await self._claim(conn)
                    connected = True
                    if items:
                        try:
                            await self._process(conn, items)
                        finally:
                            # whatever happened, this lane no longer works on them: the heartbeat stops
                            # renewing their lease, so none can stay in progress past it
                            self.held.difference_update(i.id for i in items)
                        continue
                    wait, busy = await self._next_due(conn)
                    if drain and wait is None and busy == 0:
                        return
                    timeout = self.config.poll_interval if wait is None else min(self.config.poll_interval, wait)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), max(0.005, timeout))
                except (psycopg.OperationalError, OSError) as exc:
                    log.warning("lane %d: database unavailable (%s); retrying", number, exc, event="worker")
                    if conn is not None:
                        await conn.close()
                    conn = None
                    if not connected:
                        await self._pause(min(1.0, self.config.db.reconnect_timeout))
                    connected = False
        finally:
            if conn is not None:
                await conn.close()

    # ------------------------------------------------------------ database steps

    async def _reap(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> None:
        """Hand back the items of workers that stopped renewing their lease (a lease expiry is not an attempt)."""
        now = time.monotonic()
        if now - self._last_reap < min(5.0, self.config.lease_seconds / 2):
            return
        self._last_reap = now
        async with conn.transaction():
            expired = await esl_store.expired_items(conn)
            if not expired:
                return
            rows, fates = [], Counter[str]()
            for e in expired:
                decision = decide_retry(
                    Cause.LEASE_EXPIRED,
                    self.config.budget,
                    failures=e["attempts"],
                    answered=e["answered_errors"],
                    failing_for=e["retrying_for"] or 0.0,
                )
                fates[decision.reason] += 1
                rows.append(
                    {
                        "id": e["id"],
                        "state": decision.state,
                        "status": "dead" if decision.state == "dead" else "lease_expired",
                        "error": f"lease expired: worker {e['locked_by']} stopped answering",
                        "detail": decision.reason,
                        **{k: e[k] for k in ("inbox_id", "store_code", "product_id", "operation")},
                        "attempt": e["attempts"],
                    }
                )
            await esl_store.return_expired(conn, rows, self.config.worker_id)
        for reason, count in fates.items():
            log.warning("%d item(s) whose worker stopped renewing the lease: %s", count, reason, event="lease")

    async def _claim(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> list[ClaimedItem]:
        async with conn.transaction():
            items = await esl_store.claim_items(
                conn, limit=self.config.batch_size, worker=self.config.worker_id, lease=self.config.lease_seconds
            )
        if items:
            self.held.update(i.id for i in items)
            self._renewed_at = time.monotonic()
        self.stats.claimed += len(items)
        return items

    async def _next_due(self, conn: psycopg.AsyncConnection[dict[str, Any]]) -> tuple[float | None, int]:
        async with conn.transaction():
            return await esl_store.next_due(conn)

    async def _finish(self, conn: psycopg.AsyncConnection[dict[str, Any]], results: Sequence[ItemResult]) -> None:
        """Record the batch's results; after a database error, reconnect and record them again.

        FINISH is safe to repeat (it only moves items this worker still holds), so a result whose
        commit was lost with the connection is simply recorded again. The worker keeps trying while
        its lease lasts (the heartbeat renews it once the database answers again); after that it
        stops holding the items and the lease returns them to the queue (a batch Hipoink received
        is then sent again, which create_multiple and del_multiple allow).
        """
        params = esl_store.finish_params(results, self.config.worker_id)
        own: psycopg.AsyncConnection[dict[str, Any]] | None = None
        delay = 0.1
        try:
            while True:
                target = own or conn
                try:
                    if target.closed:
                        own = target = await self._connect()
                    async with target.transaction():
                        row = await esl_store.record_results(target, params)
                    break
                except (psycopg.OperationalError, OSError) as exc:
                    if time.monotonic() + delay >= self._renewed_at + self.config.lease_seconds or self.stop.is_set():
                        log.error(
                            "could not record the results of %d item(s) (%s); their lease will return them"
                            " to the queue",
                            len(results),
                            exc,
                            event="worker",
                        )
                        raise
                    log.warning(
                        "recording the results of %d item(s) failed (%s); retrying", len(results), exc, event="worker"
                    )
                    if own is not None:
                        await own.close()
                        own = None
                    elif not conn.closed:
                        await conn.close()
                    await self._pause(delay)
                    delay = min(delay * 2, self.config.db.reconnect_timeout)
        finally:
            if own is not None:
                await own.close()
        for result in results:
            self.held.discard(result.item.id)
        if row["finished"] < len(results):
            log.warning(
                "%d of %d item(s) were no longer held by this worker (their lease passed): whoever holds them"
                " now sends them again",
                len(results) - row["finished"],
                len(results),
                event="lease",
            )
        for result in results:
            self.stats.results[result.log_status] += 1
        _log_outcomes(results)

    # ------------------------------------------------------------ one claimed batch

    async def _process(self, conn: psycopg.AsyncConnection[dict[str, Any]], items: list[ClaimedItem]) -> None:
        grouped = coalesce(items)
        by_id = {i.id: i for i in items}
        results: list[ItemResult] = []
        upserts: dict[str, list[tuple[ClaimedItem, dict[str, Any]]]] = {}
        deletes: dict[str, list[ClaimedItem]] = {}
        for item in grouped.winners:
            code = item.store_code
            if item.product_status == "deleted":
                deletes.setdefault(code, []).append(item)
                continue
            problem = None
            if not item.mapping_active:
                problem = "the store mapping is inactive"
            elif item.product_status != "valid":
                problem = f"product is invalid: {item.validation_errors}"
            payload = hipoink_product(item.label_fields(), item.stock_field)
            problem = problem or "; ".join(validate_hipoink_product(payload)) or None
            if problem:
                results.append(ItemResult(item, "failed", "failed", error=problem))
                continue
            upserts.setdefault(code, []).append((item, payload))
        for code, pairs in upserts.items():
            results += await self._send_upserts(code, pairs)
        for code, group in deletes.items():
            results += await self._send_deletes(code, group)
        outcome = {r.item.id: r for r in results}
        for loser_id, winner_id in grouped.superseded.items():
            winner = outcome[winner_id]
            results.append(
                ItemResult(
                    by_id[loser_id],
                    winner.state,
                    winner.log_status,
                    error=winner.error,
                    delay=winner.delay,
                    http_status=winner.http_status,
                    error_code=winner.error_code,
                    detail=f"coalesced into #{winner_id}",
                    sent_at=winner.sent_at,
                    acked_at=winner.acked_at,
                    pc=winner.pc,
                )
            )
        await self._finish(conn, results)

    async def _send_upserts(self, store: str, pairs: list[tuple[ClaimedItem, dict[str, Any]]]) -> list[ItemResult]:
        results: list[ItemResult] = []
        if self.config.mode == "single":
            for item, payload in pairs:
                results += await self._send_group(store, [(item, payload)], single=True)
        else:
            for group in chunks(pairs, self.config.batch_size):
                results += await self._send_group(store, list(group))
        # a product whose code changed: the old code is removed from the labels after the new one is there
        stale = [
            r.item.sent_pc
            for r in results
            if r.log_status == "succeeded"
            and r.item.sent_pc
            and r.sent_payload
            and r.item.sent_pc != r.sent_payload["pc"]
        ]
        if stale:
            await self.limiter.acquire(store)
            verdict = await self.client.delete_multiple(store, stale)
            self.stats.requests += 1
            if not verdict.ok:
                log.warning("could not remove replaced product codes %s: %s", stale, verdict.error, event="sync")
        return results

    async def _send_group(
        self, store: str, pairs: list[tuple[ClaimedItem, dict[str, Any]]], single: bool = False
    ) -> list[ItemResult]:
        """Send products; on a permanent refusal of several, split them to find the ones refused."""
        verdict, sent_at, acked_at = await self._post_products(store, pairs, single)
        return await self._resolve(store, pairs, verdict, sent_at, acked_at)

    async def _post_products(
        self, store: str, pairs: list[tuple[ClaimedItem, dict[str, Any]]], single: bool = False
    ) -> tuple[Verdict, datetime, datetime]:
        await self.limiter.acquire(store)
        sent_at = _now()
        if single:
            verdict = await self.client.create(store, pairs[0][1])
        else:
            verdict = await self.client.create_multiple(store, [p for _, p in pairs])
        self.stats.requests += 1
        return verdict, sent_at, _now()

    async def _resolve(
        self,
        store: str,
        pairs: list[tuple[ClaimedItem, dict[str, Any]]],
        verdict: Verdict,
        sent_at: datetime,
        acked_at: datetime,
    ) -> list[ItemResult]:
        if verdict.ok:
            self.stats.products_sent += len(pairs)
            return [
                ItemResult(
                    item,
                    "succeeded",
                    "succeeded",
                    http_status=verdict.http_status,
                    error_code=0,
                    sent_at=sent_at,
                    acked_at=acked_at,
                    pc=payload["pc"],
                    sent_payload=payload,
                )
                for item, payload in pairs
            ]
        if verdict.transient or len(pairs) == 1:
            return [self._failure(item, verdict, sent_at, acked_at, payload["pc"]) for item, payload in pairs]
        half = len(pairs) // 2
        halves = [pairs[:half], pairs[half:]]
        replies = [await self._post_products(store, part) for part in halves]
        if all(not v.ok and not v.transient and v.error == verdict.error for v, _, _ in replies):
            # both halves refused alike: a refusal of everything (a wrong sign ...), not one bad product
            return [self._failure(item, verdict, sent_at, acked_at, p["pc"]) for item, p in pairs]
        results: list[ItemResult] = []
        for part, (part_verdict, part_sent, part_acked) in zip(halves, replies, strict=True):
            results += await self._resolve(store, part, part_verdict, part_sent, part_acked)
        return results

    async def _send_deletes(self, store: str, items: list[ClaimedItem]) -> list[ItemResult]:
        results: list[ItemResult] = []
        with_code = [i for i in items if i.code]
        for item in items:
            if not item.code:
                results.append(ItemResult(item, "succeeded", "succeeded", detail="no product code: nothing to remove"))
        for group in chunks(with_code, self.config.batch_size):
            codes = sorted({i.code for i in group if i.code})
            await self.limiter.acquire(store)
            sent_at = _now()
            verdict = await self.client.delete_multiple(store, codes)
            acked_at = _now()
            self.stats.requests += 1
            for item in group:
                code = item.code
                if verdict.ok:
                    results.append(
                        ItemResult(
                            item,
                            "succeeded",
                            "succeeded",
                            http_status=verdict.http_status,
                            error_code=0,
                            sent_at=sent_at,
                            acked_at=acked_at,
                            pc=code,
                            removed=True,
                        )
                    )
                else:
                    results.append(self._failure(item, verdict, sent_at, acked_at, code))
        return results

    def _failure(
        self, item: ClaimedItem, verdict: Verdict, sent_at: datetime, acked_at: datetime, pc: str | None
    ) -> ItemResult:
        cause = failure_cause(verdict.http_status, verdict.transient)
        decision = decide_retry(
            cause,
            self.config.budget,
            failures=item.attempts,
            answered=item.answered_errors,
            failing_for=item.retrying_for or 0.0,
            retry_after=verdict.retry_after,
        )
        if verdict.retry_after is not None:
            self.limiter.push_back(verdict.retry_after, item.store_code)
        log_status = {"pending": "retry"}.get(decision.state, decision.state)
        return ItemResult(
            item,
            decision.state,
            log_status,
            error=verdict.error,
            delay=decision.delay,
            http_status=verdict.http_status,
            error_code=verdict.error_code,
            detail=decision.reason,
            sent_at=sent_at,
            acked_at=acked_at,
            pc=pc,
            answered=decision.answered,
        )


def _log_outcomes(results: Sequence[ItemResult]) -> None:
    """One line per kind of failure (retries), one per dead-lettered item: what happened to each."""
    retries: Counter[tuple[str, str | None, str | None]] = Counter()
    for r in results:
        if r.log_status == "retry":
            retries[(r.item.store_code, r.detail, r.error)] += 1
        elif r.log_status in ("failed", "dead"):
            log.warning(
                "item #%s (store %s, %s %s): %s: %s",
                r.item.id,
                r.item.store_code,
                r.item.operation,
                r.pc,
                r.error,
                r.detail or "dead-lettered, not sent",
                event="dead_letter",
            )
    for (store, detail, error), count in retries.items():
        log.info("%d item(s) of store %s back to pending, %s: %s", count, store, detail, error, event="retry")


async def run_worker(
    db_url: str,
    config: WorkerConfig,
    base_url: str,
    client_id: str,
    sign: str,
    drain: bool = False,
    stop_after: float | None = None,
    stop: asyncio.Event | None = None,
) -> WorkerStats:
    """Run a worker with its own HTTP client until stopped (or drained)."""
    limits = httpx.Limits(max_connections=max(4, config.concurrency * 2))
    transport = httpx.AsyncHTTPTransport(
        limits=limits, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)], retries=0
    )
    async with httpx.AsyncClient(timeout=config.request_timeout, transport=transport) as http:
        worker = Worker(db_url, HipoinkClient(http, base_url, client_id, sign), config)
        if stop is not None:
            watcher = asyncio.ensure_future(_relay(stop, worker))
        try:
            return await worker.run(drain=drain, stop_after=stop_after)
        finally:
            if stop is not None:
                watcher.cancel()


async def _relay(stop: asyncio.Event, worker: Worker) -> None:
    await stop.wait()
    worker.stop.set()
    worker.wake.set()
