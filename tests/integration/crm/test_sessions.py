"""Sessions: expiry (exit code 3 for OTP stores, auto re-login for the others), CLI bootstrap and status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from storeflow.crm.runner import RunSummary
from storeflow.sandbox.host import SandboxHost
from storeflow.settings import Settings

pytestmark = pytest.mark.integration


def test_expired_sessions_otp_store_needs_bootstrap_others_relogin(
    crm_sandbox: SandboxHost, crm_settings: Settings, run: Callable[..., RunSummary], conn: psycopg.Connection[Any]
) -> None:
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    hook = HTTPServer(("127.0.0.1", 0), Hook)
    serving = threading.Thread(target=hook.serve_forever)
    serving.start()
    crm_settings = crm_settings.model_copy(
        update={"ALERT_WEBHOOK_URL": f"http://127.0.0.1:{hook.server_address[1]}/alert"}
    )
    for sim in ("tumbledry", "uclean"):
        crm_sandbox.sim(sim).expire_sessions()
    try:
        summary = run(crm_settings, crm="all", store="all")
    finally:
        hook.shutdown()
        serving.join()
        hook.server_close()
    assert len(received) == 1 and received[0]["kind"] == "crm_download_failed" and received[0]["exit_code"] == 3
    assert sorted(s["store"] for s in received[0]["stores"]) == ["td_a668", "uc_sector56"]
    assert "crm_download bootstrap --crm uc --store sector56" in received[0]["actions"]
    by = {o.key: o for o in summary.outcomes}
    assert summary.exit_code == 3
    assert by["td_a668"].status == "needs_bootstrap" and by["uc_sector56"].status == "needs_bootstrap"
    assert (
        "crm_download bootstrap --crm td --store a668"
        in conn.execute("SELECT error FROM ingest_audit WHERE store = 'a668'").fetchone()["error"]
    )
    assert by["td_a817"].status == "ok" and by["uc_sushantlok1"].status == "ok"  # re-logged in by themselves
    rows = conn.execute("SELECT store_code, count(*) AS n FROM fact_td_orders GROUP BY 1").fetchall()
    assert [(r["store_code"], r["n"] > 0) for r in rows] == [("a817", True)]
    checks = {r["session_key"]: r["valid"] for r in conn.execute("SELECT session_key, valid FROM session_checks")}
    assert checks["td_a668"] is False and checks["td_a817"] is True


def _cli(args: list[str], cwd: Path, env: dict[str, str], **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from storeflow.cli import crm_main; crm_main()", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def test_cli_bootstrap_otp_on_stdin_download_expiry_exit_3_and_status(
    crm_sandbox: SandboxHost, db_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "sb" / "storeflow.toml"
    crm_sandbox.write_config(config)
    text = config.read_text()
    # no OTP webhook: the code must come from the operator on stdin
    config.write_text("\n".join(line for line in text.splitlines() if not line.startswith("otp_webhook_url")))
    env = {
        **os.environ,
        "STOREFLOW_CONFIG": str(config),
        "DATABASE_URL": db_url,
        "LOG_DIRECTORY": str(tmp_path / "logs"),
        "STOREFLOW_HOME": str(tmp_path / "home"),
    }
    sim = crm_sandbox.sim("tumbledry")
    sim.report_delay = 0.2  # type: ignore[attr-defined]
    before = sim.otp.current("td_a668_manager")
    proc = _cli(["bootstrap", "--crm", "td", "--store", "a668", "--headless"], tmp_path, env)

    def answer() -> None:
        for _ in range(300):
            entry = sim.otp.current("td_a668_manager")
            if entry is not None and (before is None or entry.issued_at > before.issued_at):
                assert proc.stdin is not None
                proc.stdin.write(entry.code + "\n")
                proc.stdin.flush()
                return
            time.sleep(0.1)

    helper = threading.Thread(target=answer)
    helper.start()
    helper.join()  # stdin stays open until the code is typed (communicate would close it)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "OTP for td_a668" in err and "session saved" in out
    assert (tmp_path / "profiles" / "td_a668.json").stat().st_mode & 0o777 == 0o600

    args = ["download", "--crm", "td", "--store", "a668", "--from", "2025-11-10", "--to", "2025-11-10", "--headless"]
    ok = _cli(args, tmp_path, env)
    out, err = ok.communicate(timeout=120)
    assert ok.returncode == 0, out + err
    assert "[td_a668] ok" in out

    sim.expire_sessions()
    expired = _cli(args, tmp_path, env)
    out, err = expired.communicate(timeout=120)
    assert expired.returncode == 3, out + err
    assert "crm_download bootstrap --crm td --store a668" in out

    status = _cli(["status", "--json"], tmp_path, env)
    out, err = status.communicate(timeout=60)
    assert status.returncode == 0, err
    rows = {r["store"]: r for r in map(json.loads, out.splitlines())}
    assert rows["td_a668"]["last_success"] == "2025-11-10..2025-11-10"
    assert "needs_bootstrap" in rows["td_a668"]["last_failure"] and "expired" in rows["td_a668"]["why"]
    assert rows["uc_sector56"]["session_age"] == "no session (bootstrap needed)"

    wrong = _cli(["bootstrap", "--crm", "td", "--store", "a817", "--otp", "000000", "--headless"], tmp_path, env)
    wrong.communicate(timeout=60)
    assert wrong.returncode == 0  # a817 needs no OTP: --otp is simply not asked for

    bad = _cli(["download", "--crm", "xx"], tmp_path, env)
    _, err = bad.communicate(timeout=60)
    assert bad.returncode == 2 and "--crm must be td, uc or all" in err
    (config.parent / ".env").write_text("TD_A817_USERNAME=someone\n")  # the password variable is gone
    nocreds = _cli(["download", "--crm", "td", "--store", "a817"], tmp_path, env)
    _, err = nocreds.communicate(timeout=60)
    assert nocreds.returncode == 2 and "store td_a817: set TD_A817_PASSWORD" in err
    httpx.get(f"{crm_sandbox.urls['tumbledry']}/_sandbox/health").raise_for_status()
