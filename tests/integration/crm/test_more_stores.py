"""The CRM simulators with more stores than the spec's four (`sandbox up --stores N`): generated stores log in
with the credentials the written config names, and their facts equal /_sandbox/truth."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from storeflow.crm.progress import Progress
from storeflow.crm.runner import DownloadOptions, run_bootstrap, run_download
from storeflow.db.connect import Database
from storeflow.sandbox.host import SandboxHost
from storeflow.sandbox.tumbledry import TumbleDrySimulator
from storeflow.sandbox.uclean import UCleanSimulator
from storeflow.settings import Settings
from tests.integration.crm.test_pipeline import WINDOW, facts

pytestmark = pytest.mark.integration


def test_default_is_the_specs_two_stores_each() -> None:
    assert list(TumbleDrySimulator().stores) == ["a668", "a817"]
    assert list(UCleanSimulator().stores) == ["sector56", "sushantlok1"]
    assert TumbleDrySimulator().report_delay == 1.0
    with pytest.raises(ValueError, match="at least 2"):
        TumbleDrySimulator(stores=1)


def test_generated_stores_download_and_match_truth(
    make_settings: Callable[..., Settings], db_url: str, database: Database, conn: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:  # fmt: skip
    with SandboxHost(["tumbledry", "uclean"], port_base=0, seed=5, crm_stores=5, report_delay=0.05) as host:
        assert host.sim("tumbledry").report_delay == 0.05  # type: ignore[attr-defined]
        config = tmp_path / "sb" / "storeflow.toml"
        host.write_config(config)
        settings = make_settings(db_url=db_url, config=config)
        settings.config.crm.profiles_dir = tmp_path / "profiles"
        settings.config.crm.download_dir = tmp_path / "downloads"
        keys = [s.key for s in settings.config.crm.stores]
        assert keys == ["td_a668", "td_a817", "td_s001", "td_s002", "td_s003",
                        "uc_sector56", "uc_sushantlok1", "uc_sandbox01", "uc_sandbox02", "uc_sandbox03"]  # fmt: skip
        env = (config.parent / ".env").read_text()
        assert (
            "TD_S003_PASSWORD=td-s003-sandbox-pass" in env and "UC_SANDBOX01_USERNAME=sandbox01@uclean.sandbox" in env
        )
        generated = [s for s in settings.config.crm.stores if s.code.startswith(("s0", "sandbox"))]
        boot = asyncio.run(run_bootstrap(settings, generated, None, True, False))
        assert [o.status for o in boot] == ["ok"] * 6, boot
        options = DownloadOptions(start=WINDOW["from"], end=WINDOW["to"], headless=True, alert=False)
        summary = asyncio.run(
            run_download(settings, database, generated, options, Progress([s.key for s in generated]))
        )
        assert summary.exit_code == 0, [o.as_dict() for o in summary.outcomes]
        expected = {}
        for store in generated:
            sim = "tumbledry" if store.crm == "td" else "uclean"
            t = httpx.get(f"{host.urls[sim]}/_sandbox/truth", params={"store": store.code, **WINDOW}).json()
            expected[store.key] = (t["rows"], t["net_amount"])
        assert facts(conn) == expected
        assert all(rows > 0 for rows, _ in expected.values())
        uc_orders = conn.execute("SELECT count(DISTINCT order_number) AS n, count(*) AS m FROM fact_uc_gst").fetchone()
        assert uc_orders is not None and uc_orders["n"] == uc_orders["m"]  # generated stores' order numbers differ


def test_sandbox_up_stores_option(tmp_path: Path) -> None:
    config = tmp_path / "sb" / "storeflow.toml"
    proc = subprocess.Popen(
        [sys.executable, "-m", "storeflow", "sandbox", "up", "--only", "tumbledry,uclean", "--port-base", "0",
         "--stores", "16", "--report-delay", "2.5", "--write-config", str(config)],
        cwd=tmp_path, env={**os.environ, "LOG_DIRECTORY": str(tmp_path / "logs")}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        urls = json.loads(proc.stdout.readline())
        state = httpx.post(f"{urls['tumbledry']}/_sandbox/settings", json={}).json()
        assert (state["stores"], state["report_delay"]) == (16, 2.5)
        truth = httpx.get(f"{urls['uclean']}/_sandbox/truth", params={"store": "all", **WINDOW}).json()
        assert len(truth["stores"]) == 16 and "sandbox14" in truth["stores"]
        assert config.read_text().count('crm = "td"') == 16
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    refused = subprocess.run(
        [sys.executable, "-m", "storeflow", "sandbox", "up", "--stores", "1"], cwd=tmp_path, capture_output=True,
        text=True, env={**os.environ, "LOG_DIRECTORY": str(tmp_path / "logs")}, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and "--stores" in refused.stderr
