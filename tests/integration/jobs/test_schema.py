"""procrastinate's schema through `storeflow db migrate`: applied once, recorded, idempotent, visible."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

from storeflow.db import procrastinate
from storeflow.db.connect import Database
from storeflow.db.migrate import migrate_database, procrastinate_status

pytestmark = pytest.mark.integration


def test_procrastinate_schema_is_applied_once_and_recorded(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    first = migrate_database(db)
    assert first.procrastinate == [f"procrastinate {procrastinate.procrastinate_version()} schema"]
    assert first.storeflow[-1].name == "job_outcomes"
    again = migrate_database(db)
    assert (again.storeflow, again.procrastinate) == ([], [])
    names = [m.name for m in procrastinate.load_migrations()]
    assert names == sorted(names) and names[-1].startswith("03.04.00")
    status = procrastinate_status(db)
    assert [n for n, _ in status] == names and all(state.startswith("applied") for _, state in status)
    with psycopg.connect(empty_db_url, row_factory=dict_row) as conn:
        assert conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS t").fetchone() == {"t": True}
        # tables made outside storeflow (procrastinate's own CLI): taken as current, nothing re-applied
        conn.execute("DROP TABLE procrastinate_schema_migrations")
        conn.commit()
    assert migrate_database(db).procrastinate == []
    assert all(state.startswith("applied") for _, state in procrastinate_status(db))
    db.close()


def test_db_status_lists_procrastinate_s_migrations(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from storeflow.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("LOG_DIRECTORY", str(tmp_path / "logs"))
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(app, ["db", "status"])
    assert result.exit_code == 0, result.output
    assert f"procrastinate {procrastinate.procrastinate_version()} (jobs)" in result.output
    last = procrastinate.load_migrations()[-1].name
    assert any(last in line and "applied" in line for line in result.output.splitlines()), result.output
    assert any("0600" in line and "job_outcomes" in line and "applied" in line for line in result.output.splitlines())
