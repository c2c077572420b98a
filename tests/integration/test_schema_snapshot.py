"""The checked-in schema snapshot (src/storeflow/db/schema.sql) is exactly what our migrations produce."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storeflow.db.connect import Database
from storeflow.db.migrate import migrate
from storeflow.db.schema import SCHEMA_FILE, dump_schema, find_pg_dump

pytestmark = pytest.mark.integration


@pytest.mark.skipif(find_pg_dump() is None, reason="pg_dump not installed (Debian: apt-get install postgresql-client)")
def test_a_freshly_migrated_database_dumps_to_the_checked_in_schema(empty_db_url: str) -> None:
    db = Database(empty_db_url, kind="test")
    migrate(db)
    db.close()
    dumped = dump_schema(empty_db_url)
    assert dumped == SCHEMA_FILE.read_text(encoding="utf-8"), (
        "the migrations no longer produce src/storeflow/db/schema.sql: run `storeflow db schema --write` "
        "and check the diff in"
    )


@pytest.mark.skipif(find_pg_dump() is None, reason="pg_dump not installed (Debian: apt-get install postgresql-client)")
def test_db_schema_prints_the_snapshot_and_leaves_no_scratch_database(pg_server_url: str, tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": pg_server_url,
        "STOREFLOW_HOME": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "storeflow", "db", "schema"], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == SCHEMA_FILE.read_text(encoding="utf-8")
