from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.async_api import async_playwright

from storeflow.browser import SessionVault, find_browser, launch
from storeflow.errors import UnavailableError

pytestmark = pytest.mark.integration


async def test_chromium_loads_a_loopback_page_and_storage_state_round_trips(
    browser_path: str,
    sandbox,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    host = sandbox("hipoink")
    url = host.urls["hipoink"] + "/_sandbox/health"
    vault = SessionVault(tmp_path / "profiles")
    async with async_playwright() as pw:
        browser = await launch(pw, browser_path, headless=True)
        context = await browser.new_context()
        page = await context.new_page()
        response = await page.goto(url)
        assert response is not None and response.status == 200
        assert '"ok":true' in (await page.content()).replace(" ", "")
        await context.add_cookies([{"name": "sid", "value": "abc", "url": host.urls["hipoink"]}])
        await page.evaluate("localStorage.setItem('token', 'Bearer xyz')")
        vault.save("td_a668", await context.storage_state())
        await context.close()

        path = vault.path("td_a668")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        restored = await browser.new_context(storage_state=vault.load("td_a668"))
        page2 = await restored.new_page()
        await page2.goto(url)
        assert await page2.evaluate("localStorage.getItem('token')") == "Bearer xyz"
        cookies = await restored.cookies()
        assert any(c["name"] == "sid" and c["value"] == "abc" for c in cookies)
        await browser.close()
    assert vault.keys() == ["td_a668"]
    assert vault.age_seconds("td_a668") is not None


def test_missing_browser_says_how_to_install() -> None:
    with pytest.raises(UnavailableError, match="apt-get install -y chromium"):
        find_browser("/nonexistent/chromium")


def test_doctor_reports_missing_browser(tmp_path: Path, empty_db_url: str) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "STOREFLOW_BROWSER": "/nonexistent/chrome",
        "DATABASE_URL": empty_db_url,
        "LOG_DIRECTORY": str(tmp_path / "l"),
        "COLUMNS": "200",
    }
    result = subprocess.run(
        [sys.executable, "-m", "storeflow", "doctor"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "browser" in result.stdout and "apt-get install -y chromium" in result.stdout
    assert "database: reachable" in result.stdout
