"""`BrowserHolder`: one launch for callers at once, a fresh browser after a crash (no real Chromium)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from storeflow.crm import runner
from storeflow.crm.portals import PortalConfig
from storeflow.crm.runner import BrowserHolder, CrmRunConfig


class FakeBrowser:
    def __init__(self) -> None:
        self.connected = True
        self.closed = False

    def is_connected(self) -> bool:
        return self.connected

    async def close(self) -> None:
        self.closed = True


class FakeManager:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def start(self) -> object:
        self.log.append("start")
        await asyncio.sleep(0)  # let the other callers reach the lock
        return object()

    async def __aexit__(self, *exc: object) -> None:
        self.log.append("stop")


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[FakeBrowser]]:
    import playwright.async_api

    log: list[str] = []
    launched: list[FakeBrowser] = []

    async def launch(pw: Any, override: Any, headless: bool = True, channel: Any = None) -> FakeBrowser:
        launched.append(FakeBrowser())
        return launched[-1]

    monkeypatch.setattr(playwright.async_api, "async_playwright", lambda: FakeManager(log))
    monkeypatch.setattr(runner, "launch", launch)
    return log, launched


def _holder() -> BrowserHolder:
    return BrowserHolder(CrmRunConfig(PortalConfig(), Path("profiles"), Path("downloads")), headless=True)


def test_callers_at_once_share_one_launch_and_a_crashed_browser_is_replaced(
    fakes: tuple[list[str], list[FakeBrowser]],
) -> None:
    log, launched = fakes

    async def go() -> None:
        holder = _holder()
        first = await asyncio.gather(*(holder.get() for _ in range(4)))
        assert len(launched) == 1 and all(b is launched[0] for b in first)
        launched[0].connected = False  # Chromium crashed
        second = await asyncio.gather(*(holder.get() for _ in range(3)))
        assert len(launched) == 2 and all(b is launched[1] for b in second)
        assert launched[0].closed
        await holder.close()
        assert launched[1].closed

    asyncio.run(go())
    assert log == ["start", "stop", "start", "stop"]
