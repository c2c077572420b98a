"""CRM fixtures: one sandbox (tumbledry + uclean) per module, sessions bootstrapped once per module."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from storeflow.crm.progress import Progress
from storeflow.crm.runner import DownloadOptions, RunSummary, run_bootstrap, run_download, select_stores
from storeflow.db.connect import Database
from storeflow.sandbox.host import SandboxHost
from storeflow.settings import Settings, load_settings


def with_crm(settings: Settings, **changes: object) -> Settings:
    """A copy of ``settings`` whose ``[crm]`` section has ``changes`` (loaded settings are never changed)."""
    crm = settings.config.crm.model_copy(update=changes)
    return settings.model_copy(update={"config": settings.config.model_copy(update={"crm": crm})})


@pytest.fixture(scope="module")
def crm_sandbox() -> Iterator[SandboxHost]:
    host = SandboxHost(["tumbledry", "uclean"], port_base=0, seed=11)
    host.start_in_thread()
    host.sim("tumbledry").report_delay = 0.2  # type: ignore[attr-defined]
    host.sim("uclean").report_delay = 0.1  # type: ignore[attr-defined]
    yield host
    host.stop()


@pytest.fixture(scope="module")
def module_profiles(crm_sandbox: SandboxHost, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every store bootstrapped once (OTP stores through the sandbox OTP webhook)."""
    folder = tmp_path_factory.mktemp("crm-module")
    config = folder / "sb" / "storeflow.toml"
    crm_sandbox.write_config(config)
    settings = with_crm(load_settings(config, env={}), profiles_dir=folder / "profiles")
    outcomes = asyncio.run(run_bootstrap(settings, settings.config.crm.stores, None, True, False))
    assert [o.status for o in outcomes] == ["ok"] * 4, outcomes
    return folder / "profiles"


@pytest.fixture
def crm_settings(
    crm_sandbox: SandboxHost, module_profiles: Path, make_settings: Callable[..., Settings], db_url: str, tmp_path: Path
) -> Settings:
    """Settings for the sandbox stores, with this test's own copy of the module's sessions."""
    for sim in ("tumbledry", "uclean"):
        crm_sandbox.sim(sim).faults.clear()
        crm_sandbox.sim(sim).report_faults.clear()  # type: ignore[attr-defined]
        crm_sandbox.sim(sim).revision = 0  # type: ignore[attr-defined]
    config = tmp_path / "sb" / "storeflow.toml"
    crm_sandbox.write_config(config)
    settings = make_settings(db_url=db_url, config=config, MAX_RETRIES="2")
    shutil.copytree(module_profiles, tmp_path / "profiles")
    return with_crm(
        settings, profiles_dir=tmp_path / "profiles", download_dir=tmp_path / "downloads", download_timeout_seconds=15
    )


@pytest.fixture
def run(database: Database) -> Callable[..., RunSummary]:
    def go(settings: Settings, crm: str = "all", store: str = "all", **opts: object) -> RunSummary:
        stores = select_stores(settings, crm, store)
        options = DownloadOptions(**{"start": "2025-11-10", "end": "2025-11-11", "headless": True, **opts})  # type: ignore[arg-type]
        return asyncio.run(run_download(settings, database, stores, options, Progress([s.key for s in stores])))

    return go
