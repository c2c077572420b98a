"""Jobs fixtures: the CRM simulators in this process, real `storeflow worker` subprocesses, a real database.

Sessions are bootstrapped once per module (as in tests/integration/crm); each test gets its own copy,
its own database and its own TOML file (the sandbox's, plus [crm] folders and any [[schedule]]).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from storeflow.crm.runner import run_bootstrap
from storeflow.sandbox.host import SandboxHost
from storeflow.settings import load_settings

from ..crm.conftest import with_crm

# fast clocks for the engine; the behaviour is the production one
FAST = {
    "JOB_HEARTBEAT_TIMEOUT_SECONDS": "5",  # a loaded CI machine delays heartbeats by seconds
    "JOB_STALLED_CHECK_SECONDS": "1",
    "JOB_RETRY_INITIAL_DELAY_SECONDS": "0.2",
    "JOB_RETRY_MAX_ATTEMPTS": "3",
    "JOB_POLL_INTERVAL_SECONDS": "0.5",
    "JOB_SHUTDOWN_GRACE_SECONDS": "5",
    "MAX_RETRIES": "1",
    "HEADLESS_MODE": "true",
}


@pytest.fixture(scope="module")
def crm_host() -> Iterator[SandboxHost]:
    host = SandboxHost(["tumbledry", "uclean"], port_base=0, seed=11)
    host.start_in_thread()
    host.sim("tumbledry").report_delay = 0.2  # type: ignore[attr-defined]
    host.sim("uclean").report_delay = 0.1  # type: ignore[attr-defined]
    yield host
    host.stop()


@pytest.fixture(scope="module")
def module_profiles(crm_host: SandboxHost, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("jobs-module")
    config = folder / "sb" / "storeflow.toml"
    crm_host.write_config(config)
    settings = with_crm(load_settings(config, env={}), profiles_dir=folder / "profiles")
    outcomes = asyncio.run(run_bootstrap(settings, settings.config.crm.stores, None, True, False))
    assert [o.status for o in outcomes] == ["ok"] * 4, outcomes
    return folder / "profiles"


@dataclass
class JobsEnv:
    """One test's storeflow installation: config, database, workers (subprocesses) and the CLI."""

    host: SandboxHost
    folder: Path
    config: Path
    db_url: str
    env: dict[str, str]
    workers: dict[str, subprocess.Popen[str]] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)  # workers the test stopped itself

    @property
    def profiles(self) -> Path:
        return self.folder / "profiles"

    def add_schedule(self, **table: str) -> None:
        lines = ["", "[[schedule]]", *(f'{key} = "{value}"' for key, value in table.items())]
        with self.config.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")

    def start_worker(self, name: str, *args: str, **env: str) -> subprocess.Popen[str]:
        with (self.folder / f"worker-{name}.out").open("w", encoding="utf-8") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "storeflow", "worker", "--name", name, *args],
                cwd=self.folder,
                env={**self.env, **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        self.workers[name] = proc
        return proc

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "storeflow", *args],
            cwd=self.folder,
            env={**self.env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def rows(self, query: str, *params: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.db_url, row_factory=dict_row) as conn:
            return conn.execute(query, params).fetchall()

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 120) -> Any:
        """Poll ``check`` until it returns something truthy (a bound on waiting, not a timed assertion)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            dead = [n for n, p in self.workers.items() if p.poll() is not None and n not in self.stopped]
            assert not dead, f"worker(s) {dead} exited: " + self.worker_output(dead[0])
            time.sleep(0.3)
        outputs = "\n".join(self.worker_output(n)[-3000:] for n in self.workers)
        raise AssertionError(f"gave up waiting for {what}\n{outputs}")

    def worker_output(self, name: str) -> str:
        return (self.folder / f"worker-{name}.out").read_text(encoding="utf-8", errors="replace")

    def stop_workers(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def jobs(
    crm_host: SandboxHost, module_profiles: Path, db_url: str, tmp_path: Path, receiver: tuple[str, list[Any]]
) -> Iterator[JobsEnv]:
    for sim in ("tumbledry", "uclean"):
        crm_host.sim(sim).faults.clear()
        crm_host.sim(sim).report_faults.clear()  # type: ignore[attr-defined]
        crm_host.sim(sim).revision = 0  # type: ignore[attr-defined]
    crm_host.sim("tumbledry").report_delay = 0.2  # type: ignore[attr-defined]
    config = tmp_path / "storeflow.toml"
    crm_host.write_config(config)
    text = config.read_text(encoding="utf-8")
    folders = f'[crm]\ndownload_dir = "{tmp_path / "downloads"}"\nprofiles_dir = "{tmp_path / "profiles"}"\n'
    config.write_text(text.replace("[crm]\n", folders + "download_timeout_seconds = 15\n", 1), encoding="utf-8")
    shutil.copytree(module_profiles, tmp_path / "profiles")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("JOB_", "STOREFLOW_", "DATABASE_"))},
        **FAST,
        "DATABASE_URL": db_url,
        "STOREFLOW_CONFIG": str(config),
        "STOREFLOW_HOME": str(tmp_path / "home"),
        "LOG_DIRECTORY": str(tmp_path / "logs"),
        "ALERT_WEBHOOK_URL": receiver[0],
    }
    jobs = JobsEnv(crm_host, tmp_path, config, db_url, env)
    try:
        yield jobs
    finally:
        jobs.stop_workers()
