"""The cleanup job: old job rows, rotated logs and leftover downloads go; recent ones stay."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from storeflow.db.connect import Database
from storeflow.jobs import names
from storeflow.jobs.app import plan
from storeflow.jobs.worker import run_jobs, worker_options
from storeflow.settings import Settings

pytestmark = pytest.mark.integration
OLD = time.time() - 40 * 86400


def aged(path: Path, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x", encoding="utf-8")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_cleanup_removes_what_is_past_the_retention_only(
    make_settings: Callable[..., Settings], db_url: str, database: Database, tmp_path: Path
) -> None:
    config = tmp_path / "storeflow.toml"
    config.write_text(f'[crm]\ndownload_dir = "{tmp_path / "downloads"}"\n', encoding="utf-8")
    settings = make_settings(db_url=db_url, config=config, JOB_RETENTION_DAYS="30")
    downloads, logs = tmp_path / "downloads", tmp_path / "logs"
    old_file = aged(downloads / "TD_OrderReport_A668_2025-01-01_to_2025-01-02.xlsx", OLD)
    new_file = aged(downloads / "TD_OrderReport_A668_2025-03-01_to_2025-03-02.xlsx")
    old_log, live_log = aged(logs / "crm.log.1", OLD), aged(logs / "crm.log", OLD)
    with database.transaction() as conn:
        conn.execute(
            "INSERT INTO job_outcomes (job_id, attempt, task_name, exit_code, finished_at) VALUES "
            "(-1, 1, 'crm.download', 0, now() - interval '40 days'), (-2, 1, 'crm.download', 0, now())"
        )
    (job,) = run_jobs(settings, database, plan(settings, names.CLEANUP), worker_options(settings))
    assert job["status"] == "succeeded"
    assert {k: job["detail"][k] for k in ("job_outcomes_deleted", "files_deleted")} == {
        "job_outcomes_deleted": 1,
        "files_deleted": 2,
    }
    assert not old_file.exists() and not old_log.exists()
    assert new_file.exists() and live_log.exists()  # the log being written is never removed
    with database.transaction() as conn:
        left = conn.execute("SELECT job_id FROM job_outcomes WHERE job_id < 0").fetchall()
    assert [r["job_id"] for r in left] == [-2]
