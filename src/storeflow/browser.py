"""Playwright launch and the session (storage-state) vault.

The launcher finds a browser (``STOREFLOW_BROWSER``, then Playwright's bundled
Chromium, then ``/usr/bin/chromium``, then Chrome) and always passes the flags a
closed network needs. The vault keeps one storage state per key
(``sessions/hallmark_session.json``, ``profiles/td_a668.json`` ...), written
atomically with mode 0600.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storeflow.errors import UnavailableError
from storeflow.files import write_json_atomic

if TYPE_CHECKING:
    from playwright.async_api import Browser, Playwright

CLOSED_NETWORK_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
)
SYSTEM_BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROME_NAMES = ("google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = (
    "no browser found. Install one: `apt-get install -y chromium` (Debian/Ubuntu), "
    "or set STOREFLOW_BROWSER to a Chromium/Chrome executable."
)


def _bundled_chromium() -> str | None:
    """Playwright's own Chromium, if `playwright install chromium` ever ran."""
    root = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or Path.home() / ".cache" / "ms-playwright")
    if not root.is_dir():
        return None
    for candidate in sorted(root.glob("chromium-*/chrome-linux*/chrome"), reverse=True):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_browser(override: str | None = None) -> str:
    """The browser executable to launch, or `UnavailableError` saying how to install one."""
    if override:
        path = shutil.which(override) or override
        if Path(path).is_file() and os.access(path, os.X_OK):
            return path
        raise UnavailableError(f"STOREFLOW_BROWSER={override} is not an executable file. {INSTALL_HINT}")
    bundled = _bundled_chromium()
    if bundled:
        return bundled
    for path in SYSTEM_BROWSERS:
        if os.access(path, os.X_OK):
            return path
    for name in CHROME_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise UnavailableError(INSTALL_HINT)


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@dataclass(frozen=True)
class LaunchOptions:
    executable_path: str | None
    headless: bool
    channel: str | None
    args: tuple[str, ...] = CLOSED_NETWORK_FLAGS

    def as_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"headless": self.headless, "args": list(self.args)}
        if self.channel:
            kwargs["channel"] = self.channel
        else:
            kwargs["executable_path"] = self.executable_path
        return kwargs


def launch_options(override: str | None, headless: bool, channel: str | None = None) -> LaunchOptions:
    """How to launch: ``channel="chrome"`` when configured (spec 001), else an executable path."""
    if channel:
        return LaunchOptions(executable_path=None, headless=headless, channel=channel)
    return LaunchOptions(executable_path=find_browser(override), headless=headless, channel=None)


async def launch(
    playwright: Playwright, override: str | None, headless: bool = True, channel: str | None = None
) -> Browser:
    """Launch Chromium with the closed-network flags."""
    opts = launch_options(override, headless, channel)
    try:
        return await playwright.chromium.launch(**opts.as_kwargs())
    except Exception as exc:
        raise UnavailableError(f"could not launch the browser ({opts.executable_path or channel}): {exc}") from exc


class SessionVault:
    """Storage states on disk, one JSON file per key, mode 0600, atomic writes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def load(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def save(self, key: str, state: dict[str, Any]) -> Path:
        return write_private_json(self.path(key), state)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def age_seconds(self, key: str) -> float | None:
        path = self.path(key)
        if not path.is_file():
            return None
        return max(0.0, time.time() - path.stat().st_mtime)

    def keys(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.json"))


def write_private_json(path: Path, data: Any) -> Path:
    """Write JSON atomically (temp file + rename) with mode 0600."""
    return write_json_atomic(path, data, private=True)


def vault_for_file(session_file: Path) -> tuple[SessionVault, str]:
    """A vault + key for a single configured file such as SESSION_FILE."""
    return SessionVault(session_file.parent), session_file.stem
