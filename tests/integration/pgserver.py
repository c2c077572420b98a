"""A private PostgreSQL server for outage tests: stopped and started at will, never the shared one."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from storeflow.db.connect import Database
from storeflow.db.embedded import start_embedded, stop_embedded
from storeflow.db.migrate import migrate


@dataclass
class PrivateServer:
    home: Path
    url: str

    def stop(self) -> None:
        """``pg_ctl -m fast stop``: every session is terminated, as in a restart."""
        assert stop_embedded(self.home, mode="fast")

    def start(self) -> None:
        assert start_embedded(self.home) == self.url


@contextmanager
def private_server() -> Iterator[PrivateServer]:
    """The embedded server in a temporary folder, migrated; stopped at the end whatever happens."""
    home = Path(tempfile.mkdtemp(prefix="sf-outage-"))
    url = start_embedded(home)
    try:
        db = Database(url, kind="test")
        migrate(db)
        db.close()
        yield PrivateServer(home, url)
    finally:
        stop_embedded(home, mode="immediate")
