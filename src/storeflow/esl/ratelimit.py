"""HIPOINK_RATE_LIMIT_PER_SECOND across every worker process: one shared limit per Hipoink server.

The key is the Hipoink base URL; a store whose mapping sets ``hipoink_rate_limit_per_second`` (its
labels live on a Hipoink account of their own) gets a limit of its own under the same server.
The per-process `storeflow.esl.worker.RateLimiter` stays for RATE_LIMIT_SCOPE=process.
"""

from __future__ import annotations

import time

from storeflow.db.pool import PoolConfig
from storeflow.esl.store import STORE_RATE_LIMITS
from storeflow.http.shared import SharedRate, SlotBook

REFRESH_SECONDS = 30.0


def hipoink_key(base_url: str, store: str | None = None) -> str:
    key = f"hipoink {base_url.rstrip('/')}"
    return f"{key} store {store}" if store else key


class SharedHipoinkLimiter:
    """The worker's limiter (same calls as `RateLimiter`) with the limit held in PostgreSQL."""

    def __init__(
        self, db_url: str, db: PoolConfig, holder: str, base_url: str, rate: float, lease_seconds: float
    ) -> None:
        self.book = SlotBook(db_url, db, holder)
        self.base_url = base_url
        self.rate = rate
        self.lease_seconds = lease_seconds
        self.server = SharedRate(self.book, hipoink_key(base_url), rate, lease_seconds)
        self._stores: dict[str, SharedRate] = {}
        self._store_rates: dict[str, float] = {}
        self._refreshed = -REFRESH_SECONDS

    async def acquire(self, store: str | None = None) -> None:
        await (await self._limit(store)).acquire()

    async def ready(self) -> None:
        await self.server.ready()

    def push_back(self, seconds: float, store: str | None = None) -> None:
        limit = self._stores.get(store or "", self.server)
        limit.push_back(seconds)

    async def aclose(self) -> None:
        for limit in (self.server, *self._stores.values()):
            await limit.aclose()
        await self.book.aclose()

    async def _limit(self, store: str | None) -> SharedRate:
        now = time.monotonic()
        if now - self._refreshed >= REFRESH_SECONDS:
            rows = await self.book.rows(STORE_RATE_LIMITS)
            self._store_rates = {r["store"]: float(r["rate"]) for r in rows}
            self._refreshed = now
        rate = self._store_rates.get(store or "")
        if rate is None:
            return self.server
        limit = self._stores.get(store or "")
        if limit is None or limit.rate != rate:
            limit = self._stores[store or ""] = SharedRate(
                self.book, hipoink_key(self.base_url, store), rate, self.lease_seconds
            )
        return limit
