"""`storeflow demo` with stdout on a pipe: the dashboard URL arrives while the demo is still serving."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration


def test_dashboard_url_reaches_a_pipe_before_exit(tmp_path: Path, db_url: str) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": db_url,
        "LOG_DIRECTORY": str(tmp_path / "logs"),
        "STOREFLOW_HOME": str(tmp_path / "home"),
        "COLUMNS": "200",
    }
    # the quickest step (about a second): the test is about the output, not the pipelines
    proc = subprocess.Popen(
        [sys.executable, "-m", "storeflow", "demo", "--only", "esl"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    guard = threading.Timer(120, proc.kill)  # a hang guard, not a timing assertion
    guard.start()
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            found = re.search(r"Dashboard:\s+(http://127\.0\.0\.1:\d+/dashboard)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "the dashboard URL never reached the pipe"
        assert proc.poll() is None, "the demo should still be serving"
        assert httpx.get(url, follow_redirects=False, timeout=30).status_code < 500
    finally:
        guard.cancel()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
