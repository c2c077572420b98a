from __future__ import annotations

import logging
from pathlib import Path

import pytest

from storeflow.logs import MASK, get_logger, redact, register_secrets, setup_logging


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
