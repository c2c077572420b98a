"""Fixtures for the Hallmark integration tests: one simulator per module, one login per module."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from storeflow.browser import write_private_json
from storeflow.db.connect import Database
from storeflow.hallmark.auth import Authenticator
from storeflow.hallmark.extract import Extractor, ExtractRequest, RunSummary
from storeflow.http.throttle import Throttle, policy_from_settings
from storeflow.sandbox.host import SandboxHost
from storeflow.settings import Settings, load_settings

DEFAULTS = {
    "rate_limit_interval": 0.02,
    "rate_limit_burst": 2,
    "retry_after": 1,
    "signon_variant": "single",
    "mfa_input": "code",
    "session_signal": "event",
    "out_of_sync_signal": "event",
}


class Portal:
    """The running simulator plus helpers to read and steer it over HTTP."""

    def __init__(self, host: SandboxHost, folder: Path) -> None:
        self.host = host
        self.url = host.urls["hallmark"]
        self.config = folder / "storeflow.toml"
        host.write_config(self.config)

    @property
    def sim(self) -> Any:
        return self.host.sim("hallmark")

    def state(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/_sandbox/state").json()

    def tune(self, **change: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/_sandbox/hallmark", json=change)
        response.raise_for_status()
        return response.json()

    def fault(self, **spec: Any) -> None:
        httpx.post(f"{self.url}/_sandbox/faults", json=spec).raise_for_status()

    def truth(self, customer_ids: str, start: str, end: str) -> dict[str, Any]:
        params = {"customer_ids": customer_ids, "start": start, "end": end}
        return httpx.get(f"{self.url}/_sandbox/truth", params=params).json()

    def reset(self) -> None:
        httpx.delete(f"{self.url}/_sandbox/faults").raise_for_status()
        self.tune(**DEFAULTS)


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    host = SandboxHost(["hallmark"], port_base=0, seed=5)
    host.start_in_thread()
    try:
        yield Portal(host, tmp_path_factory.mktemp("hallmark-sandbox"))
    finally:
        host.stop()


@pytest.fixture(scope="module")
def saved_state(portal: Portal, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One real Chromium login (TOTP) per module; tests start from a copy of its storage state."""
    folder = tmp_path_factory.mktemp("hallmark-login")
    env = {
        "MFA_METHOD": "totp",
        "SESSION_FILE": str(folder / "session.json"),
        "LOG_DIRECTORY": str(folder / "logs"),
        "STOREFLOW_HOME": str(folder / "home"),
    }
    settings = load_settings(portal.config, env={**os.environ, **env})
    asyncio.run(Authenticator(settings).login())
    import json

    return dict(json.loads((folder / "session.json").read_text()))


@pytest.fixture
def hm_settings(
    portal: Portal, db_url: str, make_settings: Callable[..., Settings]
) -> Iterator[Callable[..., Settings]]:
    def build(**env: str) -> Settings:
        return make_settings(db_url=db_url, config=portal.config, **env)

    yield build
    portal.reset()


@pytest.fixture
def with_session(saved_state: dict[str, Any]) -> Callable[[Settings], None]:
    def install(settings: Settings) -> None:
        write_private_json(settings.SESSION_FILE, saved_state)

    return install


def extract(settings: Settings, database: Database, **kwargs: Any) -> RunSummary:
    """Run one extraction in-process, exactly as the CLI does (minus the progress bar)."""
    request = ExtractRequest(**kwargs)
    auth = Authenticator(settings)
    extractor = Extractor(settings, database, auth, throttle=Throttle(policy_from_settings(settings)))
    summary = asyncio.run(extractor.run(request))
    return summary


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`storeflow ...` in a subprocess (cwd's environment as set by make_settings)."""
    return subprocess.run(
        [sys.executable, "-m", "storeflow", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
    )
