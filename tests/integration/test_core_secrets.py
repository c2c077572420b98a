"""Hipoink's public default sign outside the sandbox: a warning at start and in `doctor`, refused in production."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration

WARNING = "HIPOINK_API_SECRET is the public default value"


def _env(tmp_path: Path, db_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HIPOINK_", "APP_", "STOREFLOW_"))}
    return {
        **env,
        "DATABASE_URL": db_url,
        "LOG_DIRECTORY": str(tmp_path / "logs"),
        "STOREFLOW_HOME": str(tmp_path / "home"),
        "HIPOINK_API_BASE_URL": "https://hipoink.example.com",
        "COLUMNS": "200",
        **extra,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_warns_at_start_in_development(tmp_path: Path, db_url: str) -> None:
    port = _free_port()
    cmd = [sys.executable, "-m", "storeflow", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=_env(tmp_path, db_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while "storeflow serving on" not in proc.stdout.readline():
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
        # the line is printed from uvicorn's startup (after its signal handlers; test_web_serve_workers
        # covers a SIGINT right then); this test waits for /health as well, to stop a serving process
        while not _answers(port):
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not answer /health"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            raise
    assert WARNING in err


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code in {200, 503}
    except httpx.HTTPError:
        return False


def test_serve_refuses_the_public_sign_in_production(tmp_path: Path, db_url: str) -> None:
    env = _env(tmp_path, db_url, APP_ENVIRONMENT="production", STOREFLOW_ADMIN_TOKEN="a-long-enough-admin-token-123")
    result = subprocess.run(
        [sys.executable, "-m", "storeflow", "serve", "--port", str(_free_port())],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "placeholder secret(s) in production: HIPOINK_API_SECRET" in result.stderr


@pytest.mark.parametrize(("environment", "mark"), [("development", "warn"), ("production", "FAIL")])
def test_doctor_names_the_public_sign(tmp_path: Path, db_url: str, environment: str, mark: str) -> None:
    env = _env(tmp_path, db_url, APP_ENVIRONMENT=environment, STOREFLOW_BROWSER="/nonexistent/chrome")
    result = subprocess.run(
        [sys.executable, "-m", "storeflow", "doctor"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=99
    )
    line = next(x for x in result.stdout.splitlines() if "secrets:" in x)
    assert mark in line and "HIPOINK_API_SECRET" in line
