"""Real Chromium logins against the simulator: each MFA method, both sign-on variants, expiry."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from storeflow.db.connect import Database
from storeflow.errors import ConfigError
from storeflow.hallmark.aura import TOKEN_KEY
from storeflow.hallmark.auth import Authenticator, token_from_state
from storeflow.sandbox.hallmark import USER
from tests.integration.hallmark.conftest import Portal, extract, run_cli

pytestmark = pytest.mark.integration


def _orders(portal: Portal, count: int, skip: int = 0) -> list[str]:
    return sorted(o for o, v in portal.sim.orders.items() if v.created is not None)[skip : skip + count]


def test_webhook_login_ignores_stale_code_saves_0600_and_is_reused_without_browser(
    portal: Portal, hm_settings: Any, tmp_path: Path
) -> None:
    settings = hm_settings(MFA_METHOD="webhook")
    stale = httpx.get(f"{portal.url}/_sandbox/otp", params={"user": USER}).json()["code"]
    logins = portal.state()["logins"]
    done = run_cli(["--config", str(portal.config), "hallmark", "auth-test"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ok" in done.stdout and "fwuid" in done.stdout
    assert portal.state()["logins"] == logins + 1
    assert portal.sim.otp.current(USER).code != stale  # the code used was issued after the prompt
    assert stat.S_IMODE(settings.SESSION_FILE.stat().st_mode) == 0o600
    import json

    state = json.loads(settings.SESSION_FILE.read_text())
    token = token_from_state(state, portal.url)
    assert token in {s.token for s in portal.sim.sessions.values()}
    assert any(i["name"] == TOKEN_KEY for o in state["origins"] for i in o["localStorage"])

    order_id = _orders(portal, 1)[0]
    reuse = run_cli(
        ["--config", str(portal.config), "hallmark", "--order-id", order_id],
        tmp_path,
        env={"STOREFLOW_BROWSER": "/nonexistent/chromium"},  # any browser launch would fail
    )
    assert reuse.returncode == 0, reuse.stderr
    assert "reused saved session" in reuse.stdout
    assert portal.state()["logins"] == logins + 1
    assert len(list(settings.OUTPUT_DIRECTORY.rglob(f"order_{order_id}.json"))) == 1
    check = run_cli(["--config", str(portal.config), "hallmark", "auth-test", "--reuse"], tmp_path)
    assert check.returncode == 0 and "(reused)" in check.stdout


def test_totp_login_on_the_two_step_sign_on(portal: Portal, hm_settings: Any) -> None:
    settings = hm_settings(MFA_METHOD="totp")
    portal.tune(signon_variant="two_step", mfa_input="verificationCode")
    session = asyncio.run(Authenticator(settings).login())
    assert session.token in {s.token for s in portal.sim.sessions.values()}
    assert session.fwuid == portal.state()["fwuid"]


def test_manual_prompt_login(portal: Portal, hm_settings: Any) -> None:
    settings = hm_settings(MFA_METHOD="manual")
    prompts: list[str] = []

    def prompt(text: str) -> str:
        prompts.append(text)
        return str(portal.sim.otp.current(USER).code)

    portal.tune(mfa_input="otp")
    session = asyncio.run(Authenticator(settings, prompt=prompt).login())
    assert prompts == ["Enter MFA code: "]
    assert session.token in {s.token for s in portal.sim.sessions.values()}


def test_wrong_password_is_reported_as_configuration(portal: Portal, hm_settings: Any) -> None:
    settings = hm_settings(MFA_METHOD="totp", HALLMARK_PASSWORD="not-the-password")
    with pytest.raises(ConfigError, match="rejected HALLMARK_USERNAME"):
        asyncio.run(Authenticator(settings).login())


def test_session_expiry_mid_run_logs_in_again_and_continues(
    portal: Portal, hm_settings: Any, database: Database, conn: Any
) -> None:
    settings = hm_settings(MFA_METHOD="totp")
    first = extract(settings, database, kind="orders", ids=_orders(portal, 2, skip=5))
    assert first.logins == 1
    portal.tune(invalidate_after=2)  # the sessions die before the third Aura call of the next run
    ids = _orders(portal, 5, skip=10)
    summary = extract(settings, database, kind="orders", ids=ids)
    assert summary.reused_session and summary.logins == 1  # the re-login mid-run
    assert (summary.status, summary.downloaded, summary.failed) == ("ok", 5, 0)
    assert portal.state()["invalid_session"] >= 1
    assert {p.name for p in settings.OUTPUT_DIRECTORY.rglob("order_*.json")} >= {f"order_{i}.json" for i in ids}

    portal.tune(expire_now=True)  # a saved session that expired between runs -> full login
    again = extract(settings, database, kind="orders", ids=_orders(portal, 1, skip=20))
    assert (again.reused_session, again.logins, again.status) == (False, 1, "ok")
