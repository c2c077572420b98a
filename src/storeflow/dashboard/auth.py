"""Dashboard access: who must log in, and the signed session cookie.

Login is required unless the app is bound to loopback. The cookie is
``user|expiry|hmac`` signed with a key derived from DASHBOARD_PASSWORD, so
changing the password logs everybody out and several processes agree without
shared state. Forms carry a CSRF token derived from the same key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from storeflow.web.access import open_without_credentials

if TYPE_CHECKING:
    from storeflow.settings import Settings

COOKIE = "storeflow_dashboard"
MAX_AGE_SECONDS = 12 * 3600
_PROCESS_KEY = secrets.token_bytes(32)


def login_required(bound_host: str | None, headers: Mapping[str, str]) -> bool:
    return not open_without_credentials(bound_host, headers)


def _key(settings: Settings) -> bytes:
    if settings.DASHBOARD_PASSWORD is None or not settings.DASHBOARD_PASSWORD.get_secret_value():
        return _PROCESS_KEY
    material = b"storeflow-dashboard\0" + settings.DASHBOARD_PASSWORD.get_secret_value().encode()
    return hashlib.sha256(material + b"\0" + settings.DASHBOARD_USERNAME.encode()).digest()


def _sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def check_credentials(settings: Settings, username: str, password: str) -> bool:
    """True when both match the settings; always false without a configured password."""
    configured = settings.DASHBOARD_PASSWORD.get_secret_value() if settings.DASHBOARD_PASSWORD else ""
    if not configured:
        return False
    user_ok = hmac.compare_digest(username.encode(), settings.DASHBOARD_USERNAME.encode())
    pass_ok = hmac.compare_digest(password.encode(), configured.encode())
    return user_ok and pass_ok


def issue_cookie(settings: Settings, username: str, now: float | None = None) -> str:
    expires = int((now or time.time()) + MAX_AGE_SECONDS)
    body = f"{username}|{expires}"
    return f"{body}|{_sign(_key(settings), body)}"


def read_cookie(settings: Settings, value: str | None, now: float | None = None) -> str | None:
    """The user name of a valid, unexpired cookie, else None."""
    if not value or value.count("|") != 2:
        return None
    username, expires, signature = value.split("|")
    if not hmac.compare_digest(signature, _sign(_key(settings), f"{username}|{expires}")):
        return None
    if not expires.isdigit() or int(expires) < (now or time.time()):
        return None
    return username


def read_basic(settings: Settings, header: str | None) -> str | None:
    """HTTP Basic credentials (for scripts and Prometheus), checked like the login form."""
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        username, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return username if check_credentials(settings, username, password) else None


def read_bearer(settings: Settings, header: str | None) -> bool:
    """``Authorization: Bearer <STOREFLOW_ADMIN_TOKEN>`` (the ESL API's token) also opens /metrics."""
    token = settings.STOREFLOW_ADMIN_TOKEN.get_secret_value() if settings.STOREFLOW_ADMIN_TOKEN else ""
    if not token or not header or not header.lower().startswith("bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode(), token.encode())


def csrf_token(settings: Settings, cookie: str | None) -> str:
    return _sign(_key(settings), f"csrf|{cookie or 'local'}")[:32]


def check_csrf(settings: Settings, cookie: str | None, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(settings, cookie), token or "")


class LoginThrottle:
    """At most ``limit`` failed logins per client address within ``window`` seconds (in memory, per process)."""

    def __init__(self, limit: int = 5, window: float = 300.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, list[float]] = {}

    def _recent(self, client: str, now: float) -> list[float]:
        kept = [t for t in self._failures.get(client, []) if now - t < self.window]
        if kept:
            self._failures[client] = kept
        else:
            self._failures.pop(client, None)
        return kept

    def blocked(self, client: str, now: float | None = None) -> bool:
        return len(self._recent(client, now if now is not None else time.time())) >= self.limit

    def failed(self, client: str, now: float | None = None) -> None:
        now = now if now is not None else time.time()
        self._failures[client] = [*self._recent(client, now), now]

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
