"""Shared fixtures.

PostgreSQL: ``TEST_DATABASE_URL`` when set, else an embedded server started for
the session. Each test that asks for ``db_url`` gets a fresh database cloned from
a migrated template (``storeflow_tpl_<schema fingerprint>``), so tests never see
each other's rows. Sandbox servers bind 127.0.0.1 on free ports.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from storeflow.db.connect import Database
from storeflow.db.migrate import MIGRATION_LOCK_KEY, migrate, schema_fingerprint
from storeflow.sandbox.host import SandboxHost
from storeflow.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
TEST_OUTPUT = ROOT / "test-output"


@pytest.fixture(autouse=True)
def _restore_storeflow_logging() -> Iterator[None]:
    """`setup_logging` replaces handlers and stops propagation; undo it so caplog works in any test order."""
    import logging

    logger = logging.getLogger("storeflow")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield
    for handler in list(logger.handlers):
        if handler not in handlers:
            logger.removeHandler(handler)
            handler.close()
    for handler in handlers:
        if handler not in logger.handlers:
            logger.addHandler(handler)
    logger.propagate, logger.level = propagate, level


def with_dbname(url: str, dbname: str) -> str:
    return make_conninfo(url, dbname=dbname)


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Admin URL of the PostgreSQL server the tests use."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    from storeflow.db.embedded import start_embedded, stop_embedded

    home = Path(tempfile.mkdtemp(prefix="sf-pg-"))
    url = start_embedded(home)
    yield url
    stop_embedded(home)


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> str:
    """Name of a migrated template database for the current schema."""
    name = f"storeflow_tpl_{schema_fingerprint()}"
    with psycopg.connect(pg_server_url, autocommit=True) as admin:
        admin.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY + 1,))
        try:
            exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                building = f"{name}_building_{uuid.uuid4().hex[:6]}"
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(building)))
                db = Database(with_dbname(pg_server_url, building))
                migrate(db)
                admin.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(building), sql.Identifier(name))
                )
        finally:
            admin.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY + 1,))
    return name


@pytest.fixture(scope="session")
def pgbouncer(pg_server_url: str) -> Iterator[Any]:
    """PgBouncer in transaction mode in front of the test server (tests/integration/pgbouncer.py)."""
    from tests.integration.pgbouncer import running_pgbouncer

    with running_pgbouncer(pg_server_url) as bouncer:
        yield bouncer


@pytest.fixture
def empty_db_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty database (no migrations)."""
    yield from _fresh_db(pg_server_url, None)


@pytest.fixture
def db_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """A fresh migrated database for one test."""
    yield from _fresh_db(pg_server_url, template_db)


def _fresh_db(server_url: str, template: str | None) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        if template:
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
            )
        else:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_dbname(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    db = Database(db_url, kind="test")
    yield db
    db.close()


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    from psycopg.rows import dict_row

    with psycopg.connect(db_url, row_factory=dict_row) as connection:
        yield connection


@pytest.fixture
def make_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Settings isolated in tmp_path: ``make_settings(db_url=..., config=path, **ENV)``."""
    monkeypatch.chdir(tmp_path)

    def build(db_url: str | None = None, config: Path | None = None, **env: str) -> Settings:
        values = {
            "STOREFLOW_HOME": str(tmp_path / "home"),
            "LOG_DIRECTORY": str(tmp_path / "logs"),
            "OUTPUT_DIRECTORY": str(tmp_path / "data"),
            "SESSION_FILE": str(tmp_path / "sessions" / "hallmark_session.json"),
            **env,
        }
        if db_url:
            values["DATABASE_URL"] = db_url
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        return load_settings(config)

    return build


@pytest.fixture
def sandbox() -> Iterator[Callable[..., SandboxHost]]:
    """Start simulators on free loopback ports: ``host = sandbox("hipoink", seed=1)``."""
    hosts: list[SandboxHost] = []

    def start(*names: str, seed: int = 0) -> SandboxHost:
        host = SandboxHost(list(names), port_base=0, seed=seed)
        host.start_in_thread()
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.stop()


@pytest.fixture(scope="session")
def browser_path() -> str:
    from storeflow.browser import find_browser

    return find_browser(os.environ.get("STOREFLOW_BROWSER"))


@pytest.fixture
def test_output(request: pytest.FixtureRequest) -> Path:
    """A folder under test-output/ for screenshots and artefacts of this test."""
    folder = TEST_OUTPUT / request.node.name.replace("/", "_")[:80]
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def server_dsn_parts(url: str) -> dict[str, Any]:
    return conninfo_to_dict(url)


@contextmanager
def webhook_receiver(status: int = 204) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on a free loopback port answering ``status``; yields (url, received bodies)."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on a free loopback port; yields (url, received bodies)."""
    with webhook_receiver() as found:
        yield found
