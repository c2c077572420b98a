"""ALERT_WEBHOOK_URL is a secret: a failed delivery names it nowhere (console, log files, database, overview page)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from storeflow.settings import Settings
from tests.conftest import webhook_receiver
from tests.integration.dashboard.conftest import seed, serve

pytestmark = pytest.mark.integration

SECRET_PATH = "/services/T0SECRET/B0SECRET/XyZsecretPath42"


@pytest.fixture
def failing_receiver() -> Iterator[str]:
    """A webhook receiver on 127.0.0.1 that answers every alert with 500."""
    with webhook_receiver(500) as (url, _received):
        yield url.removesuffix("/hook")


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "storeflow", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("target", ["failing receiver", "closed port"])
def test_a_failed_alert_never_shows_the_webhook_url(
    target: str,
    failing_receiver: str,
    dash_settings: Callable[..., Settings],
    db_url: str,
    conn: psycopg.Connection[Any],
    tmp_path: Path,
) -> None:
    base = failing_receiver if target == "failing receiver" else _closed_port()
    url = base + SECRET_PATH
    settings = dash_settings(ALERT_WEBHOOK_URL=url, LOG_LEVEL="DEBUG")
    seed(conn, settings.config.crm.profiles_dir, settings.SESSION_FILE)

    sample = _cli("alerts", "test", cwd=tmp_path)
    check = _cli("alerts", "check", cwd=tmp_path)
    assert sample.returncode == 1 and check.returncode == 1, sample.stderr + check.stderr
    assert "webhook: failed" in sample.stdout

    rows = conn.execute("SELECT action, payload, outcome FROM dashboard_alert_log").fetchall()
    assert {r["action"] for r in rows} == {"test", "firing"}
    assert all(r["outcome"]["webhook"].startswith("failed") for r in rows)
    logs = "".join(p.read_text(encoding="utf-8") for p in settings.LOG_DIRECTORY.glob("*.log"))
    assert "alert via webhook failed" in logs
    with serve(settings, db_url) as app:
        page = httpx.get(app + "/dashboard", timeout=30)
    assert page.status_code == 200 and "webhook: failed" in page.text

    outputs = {
        "alerts test stdout": sample.stdout,
        "alerts test stderr": sample.stderr,
        "alerts check stdout": check.stdout,
        "alerts check stderr": check.stderr,
        "log files": logs,
        "dashboard_alert_log": json.dumps([dict(r) for r in rows], default=str),
        "overview page": page.text,
    }
    for where, text in outputs.items():
        assert "XyZsecretPath42" not in text, where
        assert "T0SECRET" not in text, where


def test_rows_stored_before_redaction_are_redacted_on_the_overview_page(
    dash_settings: Callable[..., Settings], conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    url = "https://hooks.example.com" + SECRET_PATH
    dash_settings(ALERT_WEBHOOK_URL=url)
    leaked = {"webhook": f"failed: Server error '500 Internal Server Error' for url '{url}'"}
    conn.execute(
        "INSERT INTO dashboard_alert_log (condition_key, action, sent_at, payload, outcome)"
        " VALUES ('test:sample', 'test', now(), %s, %s)",
        (Jsonb({"title": "storeflow test alert"}), Jsonb(leaked)),
    )
    conn.commit()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "storeflow", "serve", "--port", str(port)],
        cwd=tmp_path, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "storeflow serving on" in proc.stdout.readline()
        page = httpx.get(f"http://127.0.0.1:{port}/dashboard", timeout=30)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert page.status_code == 200 and "storeflow test alert" in page.text
    assert "webhook: failed" in page.text and "XyZsecretPath42" not in page.text
