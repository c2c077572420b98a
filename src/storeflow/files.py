"""Files storeflow writes: private from the first byte, and atomic (a temp file in the same folder, then a rename).

A new file is created 0600 by ``os.open``/``mkstemp`` with that mode, never written first and chmod-ed after,
so no umask decides who can read a session, a download or a log; folders storeflow creates are 0700.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def make_private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents with mode 0700 (folders that exist keep their mode)."""
    missing: list[Path] = []
    folder = path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR)
        except FileExistsError:
            pass
    return path


def write_json_atomic(path: Path, data: Any, *, indent: int | None = None, private: bool = False) -> Path:
    """Write ``data`` as JSON to ``path`` through a temp file + rename.

    ``private``: mode 0600 and flushed to disk before the rename (sessions, tokens, the JSON tree,
    downloads); otherwise 0644. The temp file is 0600 from its creation either way.
    """
    make_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if not private:
            os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=indent, ensure_ascii=False)
            if indent is not None:
                fh.write("\n")
            if private:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_private_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, mode 0600 from the first byte (credentials, `.env` files)."""
    make_private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@contextmanager
def private_target(target: Path) -> Iterator[Path]:
    """A path inside a fresh 0700 folder beside ``target``, for a writer that takes no mode (Playwright's
    ``download.save_as``). When the block succeeds the file is made 0600 there, where no one else can
    reach it, and renamed onto ``target``; the folder is removed either way."""
    make_private_dir(target.parent)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staged = folder / target.name
    try:
        yield staged
        os.chmod(staged, PRIVATE_FILE)
        os.replace(staged, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
