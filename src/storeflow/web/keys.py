"""The web app's random secrets, kept 0600 under $STOREFLOW_HOME/web so every process of one home shares them.

- ``server.key``: signs dashboard cookies and CSRF tokens (never derived from the password).
- ``api-local-token``: the local mode's proof of locality for /api writes (see storeflow.web.access).

Each file is written whole under a temporary name created 0600 from the first byte, then hard-linked into
place, which fails when another process got there first (its file is then used): no reader ever sees a
partial file, no window with a wider mode, and no process overwrites another's key.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from storeflow.errors import ConfigError

SERVER_KEY = "web/server.key"
LOCAL_TOKEN = "web/api-local-token"
_cache: dict[Path, str] = {}


def _read_private(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path} is not a regular file")
        if info.st_mode & 0o077:
            raise ConfigError(f"{path} is readable by others (mode {stat.S_IMODE(info.st_mode):o}): chmod 600 it")
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise ConfigError(f"{path} belongs to another user (uid {info.st_uid})")
        value = os.read(fd, 4096).decode("ascii", "replace").strip()
    finally:
        os.close(fd)
    if len(value) < 32 or not all(c in "0123456789abcdef" for c in value):
        raise ConfigError(f"{path} does not hold a key: delete it and restart (a new one is made)")
    return value


def read_or_create_secret(path: Path) -> str:
    """The hex secret in ``path``, created (32 random bytes, mode 0600) when missing."""
    try:
        return _read_private(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            os.write(fd, (secrets.token_hex(32) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process of this home won the race: use its secret
    finally:
        tmp.unlink(missing_ok=True)
    return _read_private(path)


def _cached(home: Path, name: str) -> str:
    path = (home / name).resolve()
    if path not in _cache:
        _cache[path] = read_or_create_secret(path)
    return _cache[path]


def server_key(home: Path) -> bytes:
    """The key that signs dashboard cookies and CSRF tokens."""
    return bytes.fromhex(_cached(home, SERVER_KEY))


def local_api_token(home: Path) -> str:
    """The token a local process sends as ``Authorization: Bearer ...`` to prove it runs on this machine."""
    return _cached(home, LOCAL_TOKEN)
