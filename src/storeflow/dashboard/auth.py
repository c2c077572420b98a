"""Dashboard access: who must log in, and the signed session cookie.

Login is required once DASHBOARD_PASSWORD or STOREFLOW_ADMIN_TOKEN is set, and
always unless the app is bound to loopback (storeflow.web.access). The cookie is
``user|expiry|hmac`` signed with a key mixed from the random server key
($STOREFLOW_HOME/web/server.key, 0600) and the credentials, so changing the
password logs everybody out and the processes of one home agree. Forms carry a
CSRF token signed with the server key alone: nothing on a page says anything
about the password.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from storeflow.web.access import LoginThrottle as LoginThrottle
from storeflow.web.access import bearer, open_without_credentials, same_secret
from storeflow.web.keys import server_key

if TYPE_CHECKING:
    from storeflow.settings import Settings

COOKIE = "storeflow_dashboard"
MAX_AGE_SECONDS = 12 * 3600


def login_required(bound_host: str | None, headers: Mapping[str, str], configured: bool = False) -> bool:
    """``configured``: a credential is set, so it is required whatever the address looks like."""
    return configured or not open_without_credentials(bound_host, headers)


def _cookie_key(settings: Settings) -> bytes:
    password = settings.DASHBOARD_PASSWORD.get_secret_value() if settings.DASHBOARD_PASSWORD else ""
    material = b"cookie\0" + settings.DASHBOARD_USERNAME.encode() + b"\0" + password.encode()
    return hmac.new(server_key(settings.home), material, hashlib.sha256).digest()


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
    return f"{body}|{_sign(_cookie_key(settings), body)}"


def read_cookie(settings: Settings, value: str | None, now: float | None = None) -> str | None:
    """The user name of a valid, unexpired cookie, else None."""
    if not value or value.count("|") != 2:
        return None
    username, expires, signature = value.split("|")
    if not hmac.compare_digest(signature, _sign(_cookie_key(settings), f"{username}|{expires}")):
        return None
    if not expires.isdigit() or int(expires) < (now or time.time()):
        return None
    return username


def is_basic(header: str | None) -> bool:
    return header is not None and header[:6].lower() == "basic "


def read_basic(settings: Settings, header: str | None) -> str | None:
    """HTTP Basic credentials (for scripts and Prometheus), checked like the login form."""
    if header is None or not is_basic(header):
        return None
    try:
        username, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return username if check_credentials(settings, username, password) else None


def read_bearer(settings: Settings, header: str | None) -> bool:
    """``Authorization: Bearer <STOREFLOW_ADMIN_TOKEN>`` (the ESL API's token) also opens /metrics."""
    token = settings.STOREFLOW_ADMIN_TOKEN.get_secret_value() if settings.STOREFLOW_ADMIN_TOKEN else ""
    return same_secret(bearer(header), token)


def csrf_token(settings: Settings, cookie: str | None) -> str:
    """Bound to the session cookie (or to no session, for the login form and a local-mode dashboard)."""
    return _sign(server_key(settings.home), f"csrf|{cookie or 'local'}")[:32]


def check_csrf(settings: Settings, cookie: str | None, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(settings, cookie), token or "")
