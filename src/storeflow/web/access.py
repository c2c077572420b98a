"""Who may use /api, /dashboard, /metrics and /docs: pure policy over settings and request headers.

Two modes (docs/security.md):
- *configured*: STOREFLOW_ADMIN_TOKEN or DASHBOARD_PASSWORD is set. Every guarded route needs a credential,
  loopback included, because a forwarder that adds no header (``ssh -L``, socat, a bare ``proxy_pass``)
  makes a remote caller look local.
- *local*: neither is set. Direct callers of a loopback-bound app may read (dashboard, /metrics, /docs,
  /api GET); /api writes need the local token, a random file under STOREFLOW_HOME that only processes of
  the same user on the same machine can read, which no proxy can add for its clients.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from storeflow.errors import ConfigError
from storeflow.web.keys import LOCAL_TOKEN as LOCAL_TOKEN_NAME

if TYPE_CHECKING:
    from storeflow.settings import Settings

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_ALLOWED_HOSTS = ("127.0.0.1", "localhost", "[::1]")
MIN_ADMIN_TOKEN = 16
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def is_forwarded(headers: Mapping[str, str]) -> bool:
    """True when a reverse proxy or tunnel passed the request on (it may come from anywhere)."""
    return "x-forwarded-for" in headers or "forwarded" in headers or "x-real-ip" in headers


def open_without_credentials(bound_host: str | None, headers: Mapping[str, str]) -> bool:
    """A loopback-bound app answers local callers freely; anything bound wider, or proxied, must authenticate.

    Only consulted in local mode (no credential configured): headers can be left out by a forwarder.
    """
    return (bound_host or "") in LOOPBACK and not is_forwarded(headers)


def admin_token(settings: Settings) -> str | None:
    """STOREFLOW_ADMIN_TOKEN's value; None when the variable is not set at all ("" when set empty)."""
    value = settings.STOREFLOW_ADMIN_TOKEN
    return value.get_secret_value() if value is not None else None


def admin_token_problem(token: str | None, *, allow_empty: bool) -> str | None:
    """Why STOREFLOW_ADMIN_TOKEN cannot be used, or None. ``token`` None = not set at all."""
    if token is None or (token == "" and allow_empty):
        return None
    if not token.strip():
        return "STOREFLOW_ADMIN_TOKEN is set but empty: remove the line or set a random value of 16+ characters"
    if len(token) < MIN_ADMIN_TOKEN:
        return (
            f"STOREFLOW_ADMIN_TOKEN is {len(token)} characters: use a random value of {MIN_ADMIN_TOKEN}+ "
            "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    return None


def _bare_host(name: str) -> str:
    """``[::1]`` -> ``::1``; lower case; no trailing dot."""
    name = name.strip().lower().rstrip(".")
    return name[1:-1] if name.startswith("[") and name.endswith("]") else name


def host_of(header: str | None) -> str | None:
    """The host name of a Host header (``example.com:8000``, ``[::1]:8000``), or None when malformed."""
    if not header:
        return None
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or (value[end + 1 :] and not value[end + 1 :].startswith(":")):
            return None
        name, port = value[1:end], value[end + 2 :]
    else:
        name, _, port = value.partition(":")
    if port and not port.isdigit():
        return None
    return name.rstrip(".") or None


def allowed_hosts(configured: str | None, bound_host: str, *base_urls: str | None) -> frozenset[str]:
    """STOREFLOW_ALLOWED_HOSTS (comma-separated), else the loopback names; always the bound host and the hosts of
    the base URLs Shopify is told to deliver to (APP_BASE_URL, each shop's ``callback_base_url``)."""
    names: list[str] = list(DEFAULT_ALLOWED_HOSTS if configured is None else configured.split(","))
    names.append(bound_host)
    names += [urlsplit(url).hostname or "" for url in base_urls if url]
    return frozenset(h for h in (_bare_host(n) for n in names) if h)


def host_allowed(header: str | None, allowed: Iterable[str]) -> bool:
    name = host_of(header)
    return name is not None and name in allowed


def is_json(content_type: str | None) -> bool:
    """``application/json`` or ``application/<x>+json``, parameters allowed."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def needs_json(method: str, path: str, headers: Mapping[str, str]) -> bool:
    """An /api write that carries (or must carry) a body; its Content-Type has to be JSON."""
    if method not in WRITE_METHODS or not (path == "/api" or path.startswith("/api/")):
        return False
    if method != "DELETE":
        return True
    return headers.get("content-length", "0") not in {"", "0"} or "transfer-encoding" in headers


def trusted_proxies(value: str | None) -> tuple[str, ...]:
    """FORWARDED_ALLOW_IPS: addresses or networks whose X-Forwarded-For/-Proto are believed; default none."""
    entries = tuple(e.strip() for e in (value or "").split(",") if e.strip())
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ConfigError(f"FORWARDED_ALLOW_IPS: {entry!r} is not an IP address or network") from exc
    return entries


def bearer(header: str | None) -> str | None:
    if not header or not header[:7].lower() == "bearer ":
        return None
    return header[7:].strip()


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time equality; an empty expected value matches nothing."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True)
class Refusal:
    status: int
    detail: str
    counts_as_failure: bool = False


@dataclass(frozen=True)
class WebAccess:
    """What the web app checks on each request, built once from settings by `create_app`."""

    bound_host: str
    admin_token: str
    dashboard_password: str
    local_token: str
    allowed_hosts: frozenset[str]
    trusted_proxies: tuple[str, ...]
    docs: bool

    @classmethod
    def from_settings(cls, settings: Settings, bound_host: str, local_token: str) -> WebAccess:
        token = admin_token(settings)
        problem = admin_token_problem(token, allow_empty=True)
        if problem:
            raise ConfigError(problem)
        password = settings.DASHBOARD_PASSWORD.get_secret_value() if settings.DASHBOARD_PASSWORD else ""
        return cls(
            bound_host=bound_host,
            admin_token=token or "",
            dashboard_password=password,
            local_token=local_token,
            allowed_hosts=allowed_hosts(
                settings.STOREFLOW_ALLOWED_HOSTS,
                bound_host,
                settings.APP_BASE_URL,
                *(shop.callback_base_url for shop in settings.config.esl.shops),
            ),
            trusted_proxies=trusted_proxies(settings.FORWARDED_ALLOW_IPS),
            docs=settings.STOREFLOW_API_DOCS,
        )

    @property
    def configured(self) -> bool:
        """A credential is set: it is then required everywhere it guards, loopback included."""
        return bool(self.admin_token or self.dashboard_password)

    def open_to(self, headers: Mapping[str, str]) -> bool:
        """Read access without credentials (local mode, direct caller of a loopback-bound app)."""
        return not self.configured and open_without_credentials(self.bound_host, headers)

    def api_refusal(self, method: str, headers: Mapping[str, str]) -> Refusal | None:
        """Why an /api request is refused, or None when it may proceed."""
        given = bearer(headers.get("authorization"))
        if self.admin_token:
            if same_secret(given, self.admin_token):
                return None
            return Refusal(401, "missing or wrong bearer token", counts_as_failure=given is not None)
        if same_secret(given, self.local_token):
            return None
        if given is not None:
            return Refusal(401, "wrong bearer token", counts_as_failure=True)
        if method not in WRITE_METHODS and self.open_to(headers):
            return None
        if self.configured:
            return Refusal(
                401,
                f"/api needs Authorization: Bearer <STOREFLOW_ADMIN_TOKEN, or the local token in $STOREFLOW_HOME/"
                f"{LOCAL_TOKEN_NAME}>",
            )
        if method in WRITE_METHODS and open_without_credentials(self.bound_host, headers):
            return Refusal(
                403,
                "STOREFLOW_ADMIN_TOKEN is not set: /api writes need Authorization: Bearer <the local token in "
                f"$STOREFLOW_HOME/{LOCAL_TOKEN_NAME}>",
            )
        return Refusal(
            403, "STOREFLOW_ADMIN_TOKEN is not set: /api answers only direct callers of an app bound to 127.0.0.1"
        )


class LoginThrottle:
    """At most ``limit`` failed credentials per client address within ``window`` seconds (in memory, per app).

    One instance per app counts the login form, HTTP Basic and bearer tokens alike. The address is the TCP
    peer unless FORWARDED_ALLOW_IPS names the proxy in front (then uvicorn puts the forwarded client there).
    """

    def __init__(self, limit: int = 5, window: float = 300.0, max_clients: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients  # bounds the memory many guessing addresses can take
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
        if client not in self._failures and len(self._failures) >= self.max_clients:
            for other in list(self._failures):
                self._recent(other, now)
            while len(self._failures) >= self.max_clients:  # still full: forget the oldest first failure
                self._failures.pop(min(self._failures, key=lambda c: self._failures[c][0]))
        self._failures[client] = [*self._recent(client, now), now]

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
