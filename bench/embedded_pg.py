"""The benchmarks' PostgreSQL: a server the caller names, else an embedded one started for the run and
stopped again when it ends, also on Ctrl-C or SIGTERM (`storeflow db stop` is never needed after a bench).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    sys.exit(128 + signum)  # unwinds through the finally blocks, which stop the server


@contextlib.contextmanager
def embedded_server(home: Path | None = None) -> Iterator[str]:
    """Start an embedded PostgreSQL in ``home`` (a new temporary folder by default); yield its URL; stop it."""
    from storeflow.db.embedded import start_embedded, stop_embedded

    home = home or Path(tempfile.mkdtemp(prefix="bench-pg-"))
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        yield start_embedded(home)
    finally:
        try:
            if stop_embedded(home):
                print(f"stopped the embedded PostgreSQL in {home}", file=sys.stderr)
        finally:
            signal.signal(signal.SIGTERM, previous)
