from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from storeflow.db.connect import Database, connect, open_database
from storeflow.db.migrate import load_migrations, migrate, migration_status
from storeflow.errors import UnavailableError

pytestmark = pytest.mark.integration


def test_migrations_apply_once_and_are_idempotent(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    first = migrate(db)
    assert [m.version for m in first] == [m.version for m in load_migrations()]
    assert migrate(db) == []
    assert all(state.startswith("applied") for _, _, state in migration_status(db))
    with connect(empty_db_url) as conn:
        count = conn.execute("SELECT count(*) AS n FROM schema_migrations").fetchone()
    assert count == {"n": len(first)}
    db.close()


def test_two_processes_migrating_at_once(empty_db_url: str, tmp_path: Path) -> None:
    script = (
        "import sys; from storeflow.db.connect import Database; from storeflow.db.migrate import migrate;"
        "print(len(migrate(Database(sys.argv[1]))))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, empty_db_url], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    # every migration applied exactly once, by one process or the other
    assert sorted(int(o) for o in outputs)[0] + sorted(int(o) for o in outputs)[1] == len(load_migrations())
    with connect(empty_db_url) as conn:
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [r["version"] for r in rows] == [m.version for m in load_migrations()]


def test_unreachable_database_url_fails_fast_without_traceback(make_settings) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(db_url="postgresql://nobody@127.0.0.1:1/none", REQUEST_TIMEOUT_SECONDS="2")
    with pytest.raises(UnavailableError, match=r"cannot reach the database at postgresql://nobody@127\.0\.0\.1:1"):
        open_database(settings)


def test_a_server_lost_mid_migration_is_unavailable_not_a_traceback(
    make_settings, empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """A server stopping while a command migrates at its start (seen in the chaos suite: `pg_ctl -m fast
    stop` as `crm download` began) is exit 4 with the reason, like any lost database."""

    def stopped(db: Database) -> list[object]:
        raise psycopg.errors.AdminShutdown("terminating connection due to administrator command")

    monkeypatch.setattr(importlib.import_module("storeflow.db.migrate"), "migrate", stopped)
    with pytest.raises(UnavailableError, match="while migrating the database: terminating connection"):
        open_database(make_settings(db_url=empty_db_url))


def test_cli_unreachable_database_exit_code(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": "postgresql://u:pw@127.0.0.1:1/x",
        "REQUEST_TIMEOUT_SECONDS": "2",
        "LOG_DIRECTORY": str(tmp_path / "logs"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "storeflow", "db", "status"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 4
    assert "cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr
    assert "pw@" not in result.stderr


def test_embedded_postgres_start_reuse_stop(tmp_path: Path) -> None:
    from storeflow.db.embedded import start_embedded, stop_embedded

    home = tmp_path / "home"
    url = start_embedded(home)
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")
        conn.commit()
    assert start_embedded(home) == url  # reuse: same running server
    assert stop_embedded(home) is True
    assert stop_embedded(home) is False
    url2 = start_embedded(home)  # restart: the data persisted
    with psycopg.connect(url2) as conn:
        assert conn.execute("SELECT x FROM kept").fetchone() == (42,)
    assert stop_embedded(home) is True


def test_cli_db_commands_on_embedded(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "STOREFLOW_HOME": str(tmp_path / "home"),
        "LOG_DIRECTORY": str(tmp_path / "l"),
    }
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "storeflow", *a],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        migrated = run("db", "migrate")
        assert migrated.returncode == 0, migrated.stderr
        status = run("db", "status")
        assert "0001" in status.stdout and "pending" not in status.stdout
        url = run("db", "url").stdout.strip()
        assert url.startswith("postgresql://") and str(tmp_path / "home") in url
    finally:
        run("db", "stop")


def test_open_database_migrates(make_settings, empty_db_url: str) -> None:  # type: ignore[no-untyped-def]
    db = open_database(make_settings(db_url=empty_db_url))
    with db.connect() as conn:
        assert conn.execute("SELECT to_regclass('pipeline_runs') AS t").fetchone() == {"t": "pipeline_runs"}
    db.close()


def test_every_connection_factory_gives_dict_rows_and_names_itself(db_url: str) -> None:
    import asyncio

    from storeflow.db.pool import PoolConfig, connect_async

    db = Database(db_url, kind="test")
    query = "SELECT current_setting('application_name') AS app"
    try:
        with db.connect() as conn:
            assert conn.execute(query).fetchone() == {"app": "storeflow"}
        with db.connect(name="import") as conn:
            assert conn.execute(query).fetchone() == {"app": "storeflow-import"}
        with db.pool.connection() as conn:
            assert conn.execute(query).fetchone() == {"app": "storeflow-storeflow"}

        async def async_rows() -> list[object]:
            pool = db.async_pool("probe")
            await pool.open(wait=True)
            try:
                async with pool.connection() as aconn:
                    pooled = await (await aconn.execute(query)).fetchone()
            finally:
                await pool.close()
            async with await connect_async(db_url, PoolConfig(), name="lane") as aconn:
                single = await (await aconn.execute(query)).fetchone()
            return [pooled, single]

        assert asyncio.run(async_rows()) == [{"app": "storeflow-probe"}, {"app": "storeflow-lane"}]
    finally:
        db.close()
