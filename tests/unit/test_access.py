from __future__ import annotations

import pytest

from storeflow.web.access import open_without_credentials


@pytest.mark.parametrize(
    ("bound_host", "headers", "open_"),
    [
        ("127.0.0.1", {}, True),
        ("::1", {}, True),
        ("0.0.0.0", {}, False),
        ("10.0.0.5", {}, False),
        (None, {}, False),
        ("", {}, False),
        ("127.0.0.1", {"x-forwarded-for": "203.0.113.9"}, False),
        ("127.0.0.1", {"forwarded": "for=203.0.113.9"}, False),
        ("127.0.0.1", {"x-real-ip": "203.0.113.9"}, False),
    ],
)
def test_only_direct_callers_of_a_loopback_app_skip_credentials(
    bound_host: str | None, headers: dict[str, str], open_: bool
) -> None:
    assert open_without_credentials(bound_host, headers) is open_
