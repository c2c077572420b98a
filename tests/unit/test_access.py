from __future__ import annotations

from pathlib import Path

import pytest

from storeflow.errors import ConfigError
from storeflow.settings import load_settings
from storeflow.web import access
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


# ---------------------------------------------------------------- Host header, Content-Type, settings values


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        ("127.0.0.1:8000", True),
        ("localhost", True),
        ("LocalHost.:8000", True),
        ("[::1]:8000", True),
        ("[::1]", True),
        ("labels.example.com", True),  # APP_BASE_URL's host
        ("attacker.example", False),
        ("127.0.0.1.attacker.example", False),
        ("localhost.attacker.example:8000", False),
        ("127.0.0.1:80x", False),
        ("[::1", False),
        ("[::1]junk", False),
        ("", False),
        (None, False),
    ],
)
def test_only_configured_host_names_are_answered(header: str | None, allowed: bool) -> None:
    hosts = access.allowed_hosts(None, "127.0.0.1", "https://labels.example.com/base")
    assert access.host_allowed(header, hosts) is allowed


@pytest.mark.parametrize(
    ("configured", "bound", "names"),
    [
        (None, "127.0.0.1", {"127.0.0.1", "localhost", "::1"}),
        (None, "0.0.0.0", {"127.0.0.1", "localhost", "::1", "0.0.0.0"}),
        ("shop.example.com, [2001:db8::1]", "10.0.0.5", {"shop.example.com", "2001:db8::1", "10.0.0.5"}),
        ("", "127.0.0.1", {"127.0.0.1"}),
    ],
)
def test_allowed_hosts_are_the_setting_plus_the_bound_host(configured: str | None, bound: str, names: set[str]) -> None:
    assert access.allowed_hosts(configured, bound) == names


def test_every_callback_base_url_shopify_delivers_to_is_allowed(tmp_path: Path) -> None:
    """A shop whose subscriptions point at its own ``callback_base_url`` must not have its deliveries refused (400)."""
    config = tmp_path / "storeflow.toml"
    config.write_text(
        '[[esl.shops]]\nshop = "a.myshopify.com"\nadmin_token_env = "SHOP_A_TOKEN"\n'
        'callback_base_url = "https://esl.example.com"\n'
        '[[esl.shops]]\nshop = "b.myshopify.com"\nwebhook_secret_env = "SHOP_B_SECRET"\n'
    )
    settings = load_settings(config, env={"APP_BASE_URL": "https://app.example.com"})
    web = access.WebAccess.from_settings(settings, "0.0.0.0", local_token="x" * 32)
    for host in ("esl.example.com", "app.example.com:443", "127.0.0.1:8000"):
        assert access.host_allowed(host, web.allowed_hosts), host
    assert not access.host_allowed("evil.example", web.allowed_hosts)


@pytest.mark.parametrize(
    ("method", "path", "headers", "content_type", "refused"),
    [
        ("POST", "/api/store-mappings/", {}, "application/json", False),
        ("POST", "/api/store-mappings/", {}, "application/json; charset=utf-8", False),
        ("PUT", "/api/store-mappings/1", {}, "application/merge-patch+json", False),
        ("POST", "/api/store-mappings/", {}, "text/plain", True),
        ("POST", "/api/store-mappings/", {}, "text/plain;charset=UTF-8", True),
        ("POST", "/api/store-mappings/", {}, "application/x-www-form-urlencoded", True),
        ("POST", "/api/store-mappings/", {}, "multipart/form-data; boundary=x", True),
        ("POST", "/api/store-mappings/", {}, None, True),
        ("PATCH", "/api/x", {}, "text/plain", True),
        ("DELETE", "/api/store-mappings/1", {}, None, False),  # no body
        ("DELETE", "/api/store-mappings/1", {"content-length": "5"}, "text/plain", True),
        ("GET", "/api/store-mappings/", {}, None, False),
        ("POST", "/webhooks/shopify/products/create", {}, "text/plain", False),  # HMAC decides there
        ("POST", "/dashboard/login", {}, "application/x-www-form-urlencoded", False),
        ("POST", "/apix", {}, "text/plain", False),
    ],
)
def test_api_writes_take_only_json(
    method: str, path: str, headers: dict[str, str], content_type: str | None, refused: bool
) -> None:
    assert (access.needs_json(method, path, headers) and not access.is_json(content_type)) is refused


@pytest.mark.parametrize(
    ("token", "allow_empty", "refused"),
    [
        (None, False, False),
        ("", True, False),
        ("", False, True),
        ("   ", True, True),
        ("tok-123456", True, True),
        ("x" * 15, False, True),
        ("x" * 16, False, False),
        ("a-long-random-token-0123456789", False, False),
    ],
)
def test_empty_or_short_admin_tokens_are_refused(token: str | None, allow_empty: bool, refused: bool) -> None:
    problem = access.admin_token_problem(token, allow_empty=allow_empty)
    assert (problem is not None) is refused
    if problem:
        assert "STOREFLOW_ADMIN_TOKEN" in problem


def test_trusted_proxies_are_addresses_or_networks() -> None:
    assert access.trusted_proxies(None) == ()
    assert access.trusted_proxies("10.0.0.1, 192.168.0.0/16,::1") == ("10.0.0.1", "192.168.0.0/16", "::1")
    with pytest.raises(ConfigError, match=r"FORWARDED_ALLOW_IPS: 'proxy\.local'"):
        access.trusted_proxies("proxy.local")


# ---------------------------------------------------------------- who reaches /api


TOKEN = "admin-token-0123456789"
LOCAL = "f" * 64


def _web(admin: str = "", password: str = "", bound: str = "127.0.0.1") -> access.WebAccess:
    return access.WebAccess(bound, admin, password, LOCAL, frozenset(), (), True)


FWD = {"x-forwarded-for": "203.0.113.9"}


@pytest.mark.parametrize(
    ("web", "method", "headers", "status"),
    [
        # local mode: reads for direct loopback callers, writes only with the local token
        (_web(), "GET", {}, None),
        (_web(), "POST", {}, 403),
        (_web(), "DELETE", {}, 403),
        (_web(), "POST", {"authorization": f"Bearer {LOCAL}"}, None),
        (_web(), "POST", {"authorization": "Bearer guess"}, 401),
        (_web(), "GET", FWD, 403),
        (_web(bound="0.0.0.0"), "GET", {}, 403),
        (_web(bound="0.0.0.0"), "PUT", {"authorization": f"Bearer {LOCAL}"}, None),
        # configured: the admin token everywhere, loopback and header-less included
        (_web(TOKEN), "GET", {}, 401),
        (_web(TOKEN), "POST", {}, 401),
        (_web(TOKEN), "GET", {"authorization": f"Bearer {TOKEN}"}, None),
        (_web(TOKEN), "GET", {"authorization": f"bearer {TOKEN}"}, None),
        (_web(TOKEN), "GET", {"authorization": f"Bearer {LOCAL}"}, 401),
        (_web(TOKEN), "GET", {"authorization": f"Basic {TOKEN}"}, 401),
        # a dashboard password alone closes /api's local reads too; the local token still opens it
        (_web(password="pw-0123456789"), "GET", {}, 401),
        (_web(password="pw-0123456789"), "GET", {"authorization": f"Bearer {LOCAL}"}, None),
    ],
)
def test_api_access_table(web: access.WebAccess, method: str, headers: dict[str, str], status: int | None) -> None:
    refusal = web.api_refusal(method, headers)
    assert (refusal.status if refusal else None) == status


def test_wrong_bearer_tokens_count_as_failed_credentials() -> None:
    assert _web(TOKEN).api_refusal("GET", {"authorization": "Bearer guess"}).counts_as_failure  # type: ignore[union-attr]
    assert not _web(TOKEN).api_refusal("GET", {}).counts_as_failure  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("web", "headers", "open_"),
    [
        (_web(), {}, True),
        (_web(), FWD, False),
        (_web(TOKEN), {}, False),  # a credential is set: required on loopback too
        (_web(password="pw-0123456789"), {}, False),
        (_web(bound="0.0.0.0"), {}, False),
    ],
)
def test_reads_without_credentials_only_in_local_mode(
    web: access.WebAccess, headers: dict[str, str], open_: bool
) -> None:
    assert web.open_to(headers) is open_


def test_the_limiter_holds_a_bounded_number_of_addresses() -> None:
    throttle = access.LoginThrottle(limit=2, window=60, max_clients=3)
    for i, client in enumerate(["a", "b", "c"]):
        throttle.failed(client, now=float(i))
        throttle.failed(client, now=float(i))
    throttle.failed("d", now=10.0)  # full: the oldest ("a") is forgotten
    assert [throttle.blocked(c, now=10.0) for c in "abcd"] == [False, True, True, False]
    throttle.failed("b", now=30.0)
    throttle.failed("b", now=31.0)
    throttle.failed("e", now=80.0)  # full again: addresses whose failures left the window go first
    assert [throttle.blocked(c, now=80.0) for c in "bcde"] == [True, False, False, False]
    assert sorted(throttle._failures) == ["b", "e"]
