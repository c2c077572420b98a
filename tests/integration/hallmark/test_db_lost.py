"""Issue 11, defect 4: a Hallmark import that loses PostgreSQL mid-run ends with exit 4 and one clear line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.integration.hallmark.test_import import _order, _write
from tests.integration.pgserver import private_server

pytestmark = pytest.mark.integration
FILES = 3000


def imported(url: str) -> int:
    try:
        with psycopg.connect(url, connect_timeout=2, row_factory=dict_row) as conn:
            row = conn.execute("SELECT count(*) AS n FROM orders").fetchone()
    except psycopg.OperationalError:
        return -1
    return int(row["n"]) if row else 0


def test_import_that_loses_the_database_mid_run_exits_4_without_a_traceback(make_settings: Any, tmp_path: Path) -> None:
    data = tmp_path / "data" / "2025" / "09" / "store_9"
    for n in range(FILES):
        _write(data, f"order_{3100000000 + n}.json", _order(str(3100000000 + n), "1000055874", 1))
    with private_server() as pg:
        make_settings(db_url=pg.url)
        command = [sys.executable, "-m", "storeflow", "hallmark", "import", "--data-dir", str(tmp_path / "data")]
        run = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while imported(pg.url) <= 0:
                assert run.poll() is None, run.communicate()
                assert time.monotonic() < deadline, "the import never started"
                time.sleep(0.02)
            pg.stop()
            stdout, stderr = run.communicate(timeout=60)
        finally:
            if run.poll() is None:
                run.kill()
        pg.start()
        assert 0 < imported(pg.url) < FILES  # it really was mid-run
    assert run.returncode == 4, (stdout, stderr)
    assert "the database became unavailable while importing" in stderr
    assert "Traceback" not in stdout + stderr
