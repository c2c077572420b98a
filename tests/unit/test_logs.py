from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from storeflow.logs import (
    MASK,
    get_logger,
    mask_url,
    mask_url_path,
    redact,
    redact_error,
    redact_value,
    redacting_console,
    register_secrets,
    setup_logging,
)


@pytest.mark.parametrize(
    ("text", "must_vanish", "must_stay"),
    [
        ("password=hunter22 user=bob", "hunter22", "user=bob"),
        ('{"code": "493817"}', "493817", '"code"'),
        ('{"aura.token": "abcDEF123"}', "abcDEF123", "aura.token"),
        ("Authorization: Bearer abc.def.ghi123", "abc.def.ghi123", "Authorization"),
        ("X-Shopify-Hmac-Sha256: q83vEjRWeJq=", "q83vEjRWeJq=", "X-Shopify"),
        ('{"sign": "80805d794841f1b4", "store_code": "001"}', "80805d794841f1b4", '"store_code": "001"'),
        ("token=eyJhbGciOiJIUzI1NiJ9.eyJpZCI6MX0.sig-part&source=store", "eyJhbGci", "source=store"),
        ("postgresql://hallmark:dbpw@localhost/x", "dbpw", "hallmark"),
        ("store_code=a668 error_code=0", "\x00", "store_code=a668 error_code=0"),
        ("otp: 123456", "123456", "otp"),
        # Python dict reprs (a headers dict or kwargs in an exception message)
        ("{'password': 'x-Pw-1234'}", "x-Pw-1234", "'password'"),
        ("{'db_password': \"it's-secret\"}", "it's-secret", "'db_password'"),
        ("{'code': 493817, 'store_code': 'a668'}", "493817", "'store_code': 'a668'"),
        ("Login(user='bob', password='hunter 22')", "hunter 22", "user='bob'"),
        # Authorization with any scheme, header or repr
        ("Authorization: Token 9f8e7d6c5b4a", "9f8e7d6c5b4a", "Authorization: Token"),
        ("authorization=Digest username=bob, response=6629fae4", "6629fae4", "authorization="),
        ("{'Authorization': 'Token 9f8e7d6c5b4a', 'Accept': 'json'}", "9f8e7d6c5b4a", "'Accept': 'json'"),
        ("Proxy-Authorization: Basic dXNlcjpwdw==", "dXNlcjpwdw==", "Proxy-Authorization"),
        # Cookie values: every pair, not only the first
        ("Cookie: sid=abc123; csrftoken=zz9-CSRF", "zz9-CSRF", "Cookie:"),
        ("Set-Cookie: sid=abc123secret; Path=/; HttpOnly", "abc123secret", "Set-Cookie:"),
        ('{"cookie": "sid=abc123secret"}', "abc123secret", '"cookie"'),
        # JSON with escaped quotes: inside a value, and JSON inside a JSON string
        ('{"password": "a\\"b-secret", "user": "bob"}', "b-secret", '"user": "bob"'),
        ('{"body": "{\\"token\\": \\"tok-SECRET-1\\"}"}', "tok-SECRET-1", '"body"'),
        ('{\\"otp\\": 493817}', "493817", '\\"otp\\"'),
        # signatures in query strings (Hipoink's sign, presigned URLs)
        ("GET /api?client_id=default&sign=80805d794841f1b4&page=1", "80805d794841f1b4", "page=1"),
        ("https://files.example.com/r.xlsx?sig=Zm9vYmFy&se=2025", "Zm9vYmFy", "se=2025"),
        ("X-Amz-Signature=deadbeefcafe&X-Amz-Date=2025", "deadbeefcafe", "X-Amz-Date=2025"),
        # quoted values in key=value prose
        ('password="two words" next', "two words", "next"),
        # readable words stay readable
        ("the stored token expired", "\x00", "the stored token expired"),
        ("status_code=500 error_code=7 condition_key=x", "\x00", "status_code=500 error_code=7 condition_key=x"),
    ],
)
def test_redact_patterns(text: str, must_vanish: str, must_stay: str) -> None:
    out = redact(text)
    assert must_vanish not in out
    assert must_stay in out


def test_registered_secret_is_masked_anywhere() -> None:
    register_secrets(["Zebra-Passphrase-77"])
    assert redact("logged in using Zebra-Passphrase-77 today") == f"logged in using {MASK} today"


def test_log_files_never_contain_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(tmp_path, "INFO", secrets=["very-secret-pw"])
    log = get_logger("auth", store="a668")
    log.info("login with very-secret-pw", event="login")
    log.warning("MFA code=778899 entered")
    try:
        raise RuntimeError("failed with password=very-secret-pw")
    except RuntimeError:
        log.exception("boom")
    for handler in logging.getLogger("storeflow").handlers:
        handler.flush()
    text = (tmp_path / "auth.log").read_text()
    console = capsys.readouterr().err
    for blob in (text, console):
        assert "very-secret-pw" not in blob
        assert "778899" not in blob
    assert "[auth/a668] [login]" in text
    assert "MFA code=***" in console  # WARNING reaches the console, masked
    assert "login with" not in console  # INFO does not by default


def test_component_files_are_separate(tmp_path: Path) -> None:
    setup_logging(tmp_path, "INFO")
    get_logger("crm", "td_a817").info("downloaded TD_OrderReport.xlsx", event="download")
    get_logger("esl").info("synced", event="sync")
    for handler in logging.getLogger("storeflow").handlers:
        handler.flush()
    assert "TD_OrderReport" in (tmp_path / "crm.log").read_text()
    assert "TD_OrderReport" not in (tmp_path / "esl.log").read_text()


def test_redacted_json_stays_json() -> None:
    text = json.dumps({"password": 'a"b', "token": 'x\\"y', "store": "s1"})
    assert json.loads(redact(text)) == {"password": MASK, "token": MASK, "store": "s1"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"password": "x", "store": "s1"}, {"password": MASK, "store": "s1"}),
        ({"n": [{"otp": 123456, "title": "password=abc"}]}, {"n": [{"otp": MASK, "title": f"password={MASK}"}]}),
        ({"webhook": "failed: token=abc"}, {"webhook": f"failed: token={MASK}"}),
        ({"verification_required": True, "count": 3}, {"verification_required": True, "count": 3}),
    ],
)
def test_redact_value(value: Any, expected: Any) -> None:
    assert redact_value(value) == expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (None, None),
        ("answered 401: {'Authorization': 'Bearer abcdefgh'}", f"answered 401: {{'Authorization': '{MASK}'}}"),
        (ValueError("password=pw1 " + "x" * 2000), f"password={MASK} " + "x" * (1000 - len(f"password={MASK} "))),
    ],
)  # fmt: skip
def test_redact_error_for_database_columns(error: object, expected: str | None) -> None:
    assert redact_error(error, 1000) == expected


def test_registered_secret_is_masked_url_encoded_too() -> None:
    register_secrets(["http://127.0.0.1:9/hook/Sec ret"])
    assert redact("posting to http%3A%2F%2F127.0.0.1%3A9%2Fhook%2FSec%20ret") == f"posting to {MASK}"


@pytest.mark.parametrize(
    ("url", "masked", "path_masked"),
    [
        ("postgresql://u:pw@h/db", f"postgresql://u:{MASK}@h/db", f"postgresql://h/{MASK}"),
        ("host=h password=pw dbname=x", f"host=h password={MASK} dbname=x", MASK),
        ("https://hooks.slack.com/services/T0/B0/xyz", "https://hooks.slack.com/services/T0/B0/xyz",
         f"https://hooks.slack.com/{MASK}"),
    ],
)  # fmt: skip
def test_mask_url(url: str, masked: str, path_masked: str) -> None:
    assert mask_url(url) == masked
    assert mask_url_path(url) == path_masked


def test_rich_console_output_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    register_secrets(["Console-Secret-99"])
    out, err = redacting_console(), redacting_console(stderr=True)
    out.print("[red]failed[/]: password=hunter22 with Console-Secret-99")
    err.print({"token": "tok-abc-123", "store": "s1"})
    captured = capsys.readouterr()
    assert "hunter22" not in captured.out and "Console-Secret-99" not in captured.out
    assert "failed: password=***" in captured.out
    assert "tok-abc-123" not in captured.err and "'s1'" in captured.err


def test_uvicorns_own_handlers_are_redacted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """uvicorn replaces its loggers' handlers (dictConfig) after storeflow set logging up: the filters stay."""
    import uvicorn

    setup_logging(tmp_path, "INFO")
    uvicorn.Config(app=None, log_level="info")  # configures uvicorn's logging, as `storeflow serve` does
    try:
        logging.getLogger("uvicorn.error").error("bad request password=%s", "uv-pw-1")
        try:
            raise RuntimeError("Authorization: Bearer uv-bearer-token-2")
        except RuntimeError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
        access = logging.getLogger("uvicorn.access")
        access.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/api?sign=uv-sign-3&x=1", "1.1", 200)
        logging.getLogger("httpx").warning("HTTP Request: GET https://h/?token=uv-token-4")
    finally:
        for name in ("uvicorn", "uvicorn.access"):
            for handler in logging.getLogger(name).handlers:
                handler.flush()
    captured = capsys.readouterr()
    both = captured.out + captured.err
    for secret in ("uv-pw-1", "uv-bearer-token-2", "uv-sign-3", "uv-token-4"):
        assert secret not in both
    assert "GET /api?sign=*** HTTP/1.1" in captured.out or "/api?sign=***&x=1" in captured.out
    assert "Exception in ASGI application" in captured.err


def test_log_files_are_created_0600(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        setup_logging(tmp_path / "logs", "INFO")
        get_logger("crm").info("hello", event="x")
    finally:
        os.umask(old)
    for handler in logging.getLogger("storeflow").handlers:
        handler.flush()
    assert stat.S_IMODE((tmp_path / "logs" / "crm.log").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "logs").stat().st_mode) == 0o700
    assert "hello" in (tmp_path / "logs" / "crm.log").read_text()
