"""CRM downloads: the served file name decides nothing but a report's extension, and every file is 0600."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response

from storeflow.browser import launch_options
from storeflow.crm.portals import DownloadError, PortalConfig, TumbleDryClient
from storeflow.crm.runner import RunSummary
from storeflow.crm.windows import Window
from storeflow.settings import CrmStore, Settings, load_settings
from storeflow.web.server import serve_in_thread

pytestmark = pytest.mark.integration

STORE = CrmStore(crm="td", code="a668", name="Uttam Nagar", username_env="TD_U", password_env="TD_P")
WINDOW = Window(date(2025, 11, 12), date(2025, 11, 13))
CANONICAL = "TD_OrderReport_UttamNagar_2025-11-12_to_2025-11-13"


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _file_server() -> FastAPI:
    """A page whose link serves bytes under any Content-Disposition file name (what a hostile portal could do)."""
    app = FastAPI()

    @app.get("/", response_class=HTMLResponse)
    async def page(name: str) -> str:
        return f'<a id="get" href="/file?name={name}">report</a>'

    @app.get("/file")
    async def served(name: str) -> Response:
        return Response(
            b"PK\x03\x04 not really a workbook", headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    return app


async def _download_and_save(browser_path: str, base: str, name: str, folder: Path) -> Path:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw, httpx.AsyncClient() as http:
        browser = await pw.chromium.launch(**launch_options(browser_path, True).as_kwargs())
        try:
            context = await browser.new_context(accept_downloads=True)
            page = await context.new_page()
            await page.goto(f"{base}/?name={name}")
            async with page.expect_download() as info:
                await page.click("#get")
            download = await info.value

            async def no_browser() -> None:
                raise AssertionError("not used")

            client = TumbleDryClient(PortalConfig.from_settings(load_settings(env={})), STORE, http, no_browser)  # type: ignore[arg-type]
            ext = client.served_extension(None, download.suggested_filename, b"")
            return await client.save_download(download, client.target(WINDOW, ext, folder))
        finally:
            await browser.close()


@pytest.mark.parametrize(
    ("served", "saved"),
    [
        ("OrderReport_a668.xlsx", f"{CANONICAL}.xlsx"),
        ("GST Report.CSV", f"{CANONICAL}.csv"),
        ("../../../evil.sh", None),
        ("report.xlsx.html", None),
        ("..%2F..%2Fescape.xlsx%2F..%2F..%2Fx", None),
        ("no-extension", None),
    ],
)
def test_only_report_extensions_are_saved_and_nothing_leaves_the_folder(
    served: str, saved: str | None, browser_path: str, tmp_path: Path
) -> None:
    folder = tmp_path / "area" / "downloads"
    with serve_in_thread(_file_server(), "hostile file server") as base, umask(0):
        if saved is None:
            with pytest.raises(DownloadError, match=r"td_a668: the served file .* is not one of xlsx, xls, csv, json"):
                asyncio.run(_download_and_save(browser_path, base, served, folder))
            assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
            return
        path = asyncio.run(_download_and_save(browser_path, base, served, folder))
    assert path == folder / saved
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()] == [Path("area/downloads") / saved]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_downloads_of_every_mode_are_created_0600(crm_settings: Settings, run: Callable[..., RunSummary]) -> None:
    """A permissive umask changes nothing: Playwright's downloads (TD browser, UC export) and API JSON files."""
    with umask(0):
        summary = run(crm_settings, keep_files=True)
    assert summary.exit_code == 0, summary.outcomes
    files = sorted(p for p in crm_settings.config.crm.download_dir.iterdir())
    assert files and {p.suffix for p in files} >= {".xlsx", ".json"}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}
    assert stat.S_IMODE(crm_settings.config.crm.download_dir.stat().st_mode) == 0o700
