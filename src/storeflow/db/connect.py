"""Which database to use, and connections to it.

`DATABASE_URL` when set; otherwise the embedded server. Callers get a
`Database` (URL + lazily created pool); query code receives connections from its
caller and never opens its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from storeflow.db.pool import (
    PoolConfig,
    connect_sync,
    is_connection_lost,
    lost_database,
    open_async_pool,
    open_sync_pool,
)
from storeflow.errors import ConfigError, UnavailableError
from storeflow.logs import mask_url

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

    from storeflow.settings import Settings


def resolve_url(settings: Settings) -> tuple[str, str]:
    """(url, kind) where kind is ``DATABASE_URL`` or ``embedded``."""
    if settings.DATABASE_URL is not None and settings.DATABASE_URL.get_secret_value():
        return settings.DATABASE_URL.get_secret_value(), "DATABASE_URL"
    from storeflow.db.embedded import start_embedded

    return start_embedded(settings.home), "embedded"


def connect(
    url: str, timeout: float = 10.0, *, name: str = "storeflow", autocommit: bool = False, pooler: str = "none"
) -> psycopg.Connection[dict[str, Any]]:
    """One connection (dict rows), failing with an operator message (no traceback) within ``timeout``."""
    try:
        return connect_sync(url, timeout, name=name, autocommit=autocommit, pooler=pooler)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnavailableError(f"cannot reach the database at {mask_url(url)}: {first}") from exc


@dataclass
class Database:
    """The database in use: its URL, how it was chosen, and a pool made on first use."""

    url: str
    kind: str = "DATABASE_URL"
    timeout: float = 10.0
    pool_config: PoolConfig = field(default_factory=PoolConfig)
    _pool: ConnectionPool | None = field(default=None, repr=False)

    def connect(self, *, name: str = "storeflow", autocommit: bool = False) -> psycopg.Connection[dict[str, Any]]:
        """One connection of its own (dict rows), for work that must not hold a pooled one."""
        return connect(self.url, self.timeout, name=name, autocommit=autocommit, pooler=self.pool_config.pooler)

    @property
    def pool(self) -> ConnectionPool:
        if self._pool is None:
            self._pool = open_sync_pool(self.url, self.pool_config, name="storeflow", min_size=1, max_size=10)
        return self._pool

    def async_pool(
        self, name: str, min_size: int = 1, max_size: int = 10, autocommit: bool = False
    ) -> AsyncConnectionPool:
        """A new async pool on this database (the caller opens and closes it)."""
        return open_async_pool(
            self.url, self.pool_config, name=name, min_size=min_size, max_size=max_size, autocommit=autocommit
        )

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside one transaction (commit on success)."""
        with self.pool.connection() as conn, conn.transaction():
            yield conn

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def open_database(settings: Settings, migrate: bool = True) -> Database:
    """Resolve, check reachability within REQUEST_TIMEOUT_SECONDS, and migrate."""
    if settings.DATABASE_POOLER == "transaction" and not (
        settings.DATABASE_URL is not None and settings.DATABASE_URL.get_secret_value()
    ):
        raise ConfigError(
            "DATABASE_POOLER=transaction needs DATABASE_URL (the pooler's address); the embedded server has none"
        )
    url, kind = resolve_url(settings)
    db = Database(
        url=url, kind=kind, timeout=settings.REQUEST_TIMEOUT_SECONDS, pool_config=PoolConfig.from_settings(settings)
    )
    from storeflow.db.migrate import migrate as run_migrations

    doing = "checking the database"
    try:  # a server that goes away now (a fast stop as the command starts): exit 4 with the reason
        with db.connect() as conn:
            conn.execute("SELECT 1")
        if migrate:
            doing = "migrating the database"
            run_migrations(db)
    except Exception as exc:
        if is_connection_lost(exc):
            raise lost_database(exc, doing) from exc
        raise
    return db
