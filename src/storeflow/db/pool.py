"""Every connection pool and worker connection storeflow opens, with one set of timeouts.

A database outage must cost a caller at most a short, bounded wait (Shopify gives up on a webhook
after 5 s), and recovery must not wait for a long reconnect backoff:

- ``connect_timeout`` bounds one connection attempt;
- ``wait_timeout`` bounds how long a request waits for a pooled connection;
- ``reconnect_timeout`` bounds a pool's reconnect attempts (1 s, 2 s, ... apart); once it passes
  the pool gives up and the next request starts a fresh attempt, so no pause grows past it;
- every connection is checked when it leaves the pool, so one a restart closed is replaced
  instead of failing a request;
- while connection attempts are failing, an async pool with no connection ready fails a request
  at once instead of letting it wait (each request still prompts a new attempt).

Behind a pooler in transaction mode (``DATABASE_POOLER=transaction``, PgBouncer) a connection is a
different server session from one transaction to the next: every connection opened here then skips
psycopg's automatic server-side prepared statements, and LISTEN, which needs one session for good,
goes to ``DATABASE_DIRECT_URL`` (`connect_listener`), or nowhere (the caller polls).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from storeflow.errors import UnavailableError

if TYPE_CHECKING:
    from storeflow.settings import Settings

# how long a request waits for a connection while attempts are failing: long enough to take an
# idle one and to prompt a new attempt, short enough that a burst of requests (the receiver
# retries a failed batch one delivery at a time) is answered at once
FAIL_FAST_SECONDS = 0.005
# server states in which the connection (or the server) is gone, not the statement refused:
# class 08 (connection exception), admin/crash shutdown, "the database system is starting up"
_LOST_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


@dataclass(frozen=True)
class PoolConfig:
    """Timeouts of every pool and worker connection (see the module docstring)."""

    connect_timeout: float = 2.0
    wait_timeout: float = 1.5
    reconnect_timeout: float = 2.0
    pooler: str = "none"  # DATABASE_POOLER: none or transaction
    direct_url: str | None = field(default=None, repr=False)  # DATABASE_DIRECT_URL (a secret: not in repr)

    @classmethod
    def from_settings(cls, settings: Settings) -> PoolConfig:
        direct = settings.DATABASE_DIRECT_URL.get_secret_value() if settings.DATABASE_DIRECT_URL else ""
        return cls(
            connect_timeout=settings.DB_CONNECT_TIMEOUT_SECONDS,
            wait_timeout=settings.DB_POOL_TIMEOUT_SECONDS,
            reconnect_timeout=settings.DB_RECONNECT_TIMEOUT_SECONDS,
            pooler=settings.DATABASE_POOLER,
            direct_url=direct or None,
        )

    def connection_kwargs(self, application_name: str, autocommit: bool = False) -> dict[str, Any]:
        return connection_kwargs(application_name, self.connect_timeout, autocommit, self.pooler)

    def listen_url(self, url: str) -> str | None:
        """Where a LISTEN connection goes: ``url`` itself, the direct URL behind a transaction pooler, or
        None (behind one with no direct URL: poll instead)."""
        return url if self.pooler != "transaction" else self.direct_url


def connection_kwargs(
    application_name: str, connect_timeout: float, autocommit: bool = False, pooler: str = "none"
) -> dict[str, Any]:
    """The one set of options every storeflow connection opens with: dict rows, a bounded connect, a name
    (and, behind a transaction pooler, no server-side prepared statements)."""
    # libpq takes whole seconds and treats anything below 2 as 2
    kwargs: dict[str, Any] = {
        "autocommit": autocommit,
        "row_factory": dict_row,
        "connect_timeout": max(2, round(connect_timeout)),
        "application_name": application_name,
    }
    if pooler == "transaction":
        # a statement psycopg prepared on one server connection does not exist on the next one the
        # pooler hands out ("prepared statement _pg3_0 does not exist")
        kwargs["prepare_threshold"] = None
    return kwargs


class FailFastAsyncPool(AsyncConnectionPool):
    """An async pool that stops making requests wait while the server cannot be reached."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unreachable = False
        self._errors_seen = 0

    async def getconn(self, timeout: float | None = None) -> Any:
        wait = self.timeout if timeout is None else timeout
        if self._unreachable:
            wait = min(wait, FAIL_FAST_SECONDS)
        try:
            conn = await super().getconn(wait)
        except PoolTimeout as exc:
            # unreachable only if connection attempts failed since the last success: a pool that
            # is merely busy keeps making requests wait their full timeout
            if self.get_stats().get("connections_errors", 0) <= self._errors_seen:
                raise
            self._unreachable = True
            raise PoolTimeout(f"the database is unreachable ({exc}; connection attempts are failing)") from None
        self._unreachable = False
        self._errors_seen = self.get_stats().get("connections_errors", 0)
        return conn


def open_async_pool(url: str, config: PoolConfig, **options: Any) -> AsyncConnectionPool:
    """An async pool (not opened yet: ``await pool.open(wait=False)``) with storeflow's timeouts.

    ``options``: name, min_size, max_size, autocommit (see `_pool_args`).
    """
    return FailFastAsyncPool(**_pool_args(url, config, AsyncConnectionPool.check_connection, **options), open=False)


def open_sync_pool(url: str, config: PoolConfig, **options: Any) -> ConnectionPool:
    """A sync pool, opened, with storeflow's timeouts (``options`` as for `open_async_pool`)."""
    return ConnectionPool(**_pool_args(url, config, ConnectionPool.check_connection, **options), open=True)


def _pool_args(
    url: str,
    config: PoolConfig,
    check: Any,
    *,
    name: str,
    min_size: int = 1,
    max_size: int = 10,
    autocommit: bool = False,
) -> dict[str, Any]:
    """The one place that sets every pool's timeouts, application_name and checkout check."""
    return {
        "conninfo": url,
        "min_size": min_size,
        "max_size": max_size,
        "kwargs": config.connection_kwargs(f"storeflow-{name}", autocommit),
        "timeout": config.wait_timeout,
        "reconnect_timeout": config.reconnect_timeout,
        "check": check,
        "name": name,
    }


def connect_sync(
    url: str, connect_timeout: float, *, name: str = "storeflow", autocommit: bool = False, pooler: str = "none"
) -> psycopg.Connection[dict[str, Any]]:
    """One sync connection (dict rows) for a command, a migration or an import worker thread."""
    app = name if name == "storeflow" else f"storeflow-{name}"
    return psycopg.connect(url, **connection_kwargs(app, connect_timeout, autocommit, pooler))


async def connect_async(
    url: str, config: PoolConfig, *, name: str, autocommit: bool = False
) -> psycopg.AsyncConnection[dict[str, Any]]:
    """One async connection (dict rows) for a long-lived task such as a worker lane or a listener."""
    return await psycopg.AsyncConnection.connect(url, **config.connection_kwargs(f"storeflow-{name}", autocommit))


async def connect_listener(url: str, config: PoolConfig, *, name: str) -> psycopg.AsyncConnection[Any] | None:
    """An autocommit connection for LISTEN, on a session that lasts: ``url``, or behind a transaction
    pooler ``DATABASE_DIRECT_URL``; None when there is no such URL (the caller polls)."""
    target = config.listen_url(url)
    if target is None:
        return None
    return await connect_async(target, config, name=name, autocommit=True)


def is_connection_lost(exc: BaseException) -> bool:
    """True when ``exc`` means the database (or the connection to it) is gone, not a refused statement."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, psycopg.InterfaceError):
        return True  # used a connection that was closed under it
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        return state is None or state.startswith("08") or state in _LOST_SQLSTATES
    return isinstance(exc, ConnectionError)


def lost_database(exc: BaseException, doing: str) -> UnavailableError:
    """An operator message (exit 4) for a database lost while ``doing`` something."""
    if isinstance(exc, UnavailableError):
        return exc
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return UnavailableError(f"the database became unavailable while {doing}: {first}")
