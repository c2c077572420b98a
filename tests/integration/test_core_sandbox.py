from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from storeflow.sandbox.host import SandboxHost

pytestmark = pytest.mark.integration


def _start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "LOG_DIRECTORY": str(cwd / "logs")}
    return subprocess.Popen(
        [sys.executable, "-m", "storeflow", "sandbox", "up", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sandbox_up_ready_line_faults_and_clean_stop(tmp_path: Path) -> None:
    proc = _start(
        ["--port-base", "0", "--seed", "3", "--write-config", str(tmp_path / "sb" / "storeflow.toml")],
        tmp_path,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        urls = json.loads(line)
        assert set(urls) >= {"hallmark", "tumbledry", "uclean", "hipoink"}
        for url in urls.values():
            assert url.startswith("http://127.0.0.1:")
            health = httpx.get(f"{url}/_sandbox/health").json()
            assert health["ok"] is True and health["seed"] == 3
        base = urls["hipoink"]
        httpx.post(f"{base}/_sandbox/faults", json={"status": 503, "count": 2}).raise_for_status()
        assert [httpx.get(f"{base}/anything").status_code for _ in range(3)] == [503, 503, 404]
        httpx.post(f"{base}/_sandbox/faults", json={"status": 429, "retry_after": 7}).raise_for_status()
        limited = httpx.get(f"{base}/x")
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "7")
        code = httpx.get(f"{base}/_sandbox/otp", params={"user": "u1"}).json()["code"]
        assert len(code) == 6 and code.isdigit()
        assert (tmp_path / "sb" / "storeflow.toml").is_file()
        env_text = (tmp_path / "sb" / ".env").read_text()
        assert "STOREFLOW_SANDBOX=true" in env_text
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_sandbox_port_in_use_names_the_port(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        proc = _start(["--only", "hipoink", "--port-base", str(port)], tmp_path)
        out, err = proc.communicate(timeout=60)
    finally:
        blocker.close()
    assert proc.returncode == 4
    assert f"port {port}" in err and "in use" in err
    assert out == ""


def test_sandbox_sigint_stops_within_seconds(tmp_path: Path) -> None:
    proc = _start(["--only", "hipoink", "--port-base", "0"], tmp_path)
    assert proc.stdout is not None
    json.loads(proc.stdout.readline())
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert time.monotonic() - started < 10


def test_sandbox_binds_host_and_hands_clients_the_public_host(tmp_path: Path) -> None:
    """In a container the sandbox binds 0.0.0.0 and its clients call it by the compose service name."""
    config = tmp_path / "sb" / "storeflow.toml"
    proc = _start(
        ["--only", "hipoink,tumbledry", "--port-base", "0", "--host", "127.0.0.2", "--public-host", "sandbox.test",
         "--write-config", str(config)],
        tmp_path,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        urls = json.loads(proc.stdout.readline())
        ports = {name: int(url.rsplit(":", 1)[1]) for name, url in urls.items()}
        assert urls == {name: f"http://sandbox.test:{port}" for name, port in ports.items()}
        assert httpx.get(f"http://127.0.0.2:{ports['hipoink']}/_sandbox/health").json()["ok"] is True
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{ports['hipoink']}/_sandbox/health")
        env_text = (config.parent / ".env").read_text()
        assert f"HIPOINK_API_BASE_URL=http://sandbox.test:{ports['hipoink']}\n" in env_text
        assert f'td_base_url = "http://sandbox.test:{ports["tumbledry"]}"' in config.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


def test_sandbox_arrivals_record_each_request_outside_the_control_endpoints(
    sandbox: Callable[..., SandboxHost],
) -> None:
    host = sandbox("hipoink")
    url = host.urls["hipoink"]
    before = time.time()
    for _ in range(3):
        httpx.post(f"{url}/api/default/product/create_multiple", content=b"{}")
    httpx.get(f"{url}/_sandbox/state")
    arrivals = httpx.get(f"{url}/_sandbox/arrivals").json()["arrivals"]
    assert len(arrivals) == 3 and all(before <= t <= time.time() for t in arrivals)
    httpx.delete(f"{url}/_sandbox/arrivals").raise_for_status()
    assert httpx.get(f"{url}/_sandbox/arrivals").json()["arrivals"] == []
