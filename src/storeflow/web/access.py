"""Who may read /api and /dashboard without credentials: only a loopback-bound app's direct callers."""

from __future__ import annotations

from collections.abc import Mapping

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def is_forwarded(headers: Mapping[str, str]) -> bool:
    """True when a reverse proxy or tunnel passed the request on (it may come from anywhere)."""
    return "x-forwarded-for" in headers or "forwarded" in headers or "x-real-ip" in headers


def open_without_credentials(bound_host: str | None, headers: Mapping[str, str]) -> bool:
    """A loopback-bound app answers local callers freely; anything bound wider, or proxied, must authenticate."""
    return (bound_host or "") in LOOPBACK and not is_forwarded(headers)
