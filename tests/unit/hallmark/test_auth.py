from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storeflow.hallmark.aura import TOKEN_KEY
from storeflow.hallmark.auth import cookie_jar, token_from_state
from storeflow.otp import fresh_code

PROMPT = 1_700_000_000.0


@pytest.mark.parametrize(
    ("payload", "stale", "code"),
    [
        ({"code": "123456"}, None, "123456"),
        ({"code": "123456"}, "123456", None),  # served before the prompt
        ({"code": "654321"}, "123456", "654321"),
        ({"code": "654321", "issued_at": PROMPT - 5}, None, None),
        ({"code": "654321", "timestamp": (PROMPT + 5) * 1000}, None, "654321"),
        ({"code": "654321", "received_at": PROMPT + 1}, "123456", "654321"),
        ({"code": "123456", "received_at": PROMPT + 1}, "123456", "123456"),  # the same code, sent again
        ({"code": "123456", "received_at": PROMPT - 1}, None, None),
        ({"code": ""}, None, None),
        ({"code": "abc"}, None, None),
        ({}, None, None),
        (None, None, None),
        (["123456"], None, None),
    ],
)
def test_fresh_code_ignores_codes_from_before_the_prompt(payload: Any, stale: str | None, code: str | None) -> None:
    assert fresh_code(payload, stale, PROMPT) == code


def test_token_from_state_prefers_the_base_origin() -> None:
    state = {
        "origins": [
            {"origin": "https://other.example", "localStorage": [{"name": TOKEN_KEY, "value": "wrong"}]},
            {"origin": "https://portal.example", "localStorage": [{"name": TOKEN_KEY, "value": "right"}]},
        ]
    }
    assert token_from_state(state, "https://portal.example/") == "right"
    assert token_from_state({"origins": []}, "https://portal.example") is None


def test_cookie_jar_sends_host_cookies() -> None:
    jar = cookie_jar([{"name": "sid", "value": "abc", "domain": "127.0.0.1", "path": "/"}])
    assert jar.get("sid") == "abc"


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({}, "HALLMARK_USERNAME, HALLMARK_PASSWORD"),
        ({"HALLMARK_USERNAME": "u", "HALLMARK_PASSWORD": "p", "MFA_METHOD": "webhook"}, "N8N_WEBHOOK_URL"),
        ({"HALLMARK_USERNAME": "u", "HALLMARK_PASSWORD": "p", "MFA_METHOD": "totp"}, "MFA_TOTP_SECRET"),
    ],
)
def test_a_login_names_the_settings_it_misses_before_any_browser_starts(
    env: dict[str, str], missing: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The narrow config keeps `Settings.require`'s message; the login raises it, as it did with the settings."""
    import asyncio

    monkeypatch.chdir(tmp_path)  # no ./.env, no ./storeflow.toml

    from storeflow.errors import ConfigError
    from storeflow.hallmark.auth import Authenticator
    from storeflow.settings import load_settings

    auth = Authenticator(load_settings(env=env))  # building it needs nothing: a saved session may do
    with pytest.raises(ConfigError, match=rf"^missing required setting\(s\): {missing} \(set them"):
        asyncio.run(auth.login())
