"""Numbered SQL migrations under ``db/migrations/NNNN_name.sql``.

Applied in order, each in its own transaction, under a transaction-level
advisory lock so two processes migrating at once serialise safely.
Number ranges: 0001-0099 core, 0100-0199 hallmark, 0200-0299 crm, 0300-0399 esl,
0400-0499 dashboard, 0500-0599 rate limits, 0600-0649 jobs. procrastinate's own schema
(db/procrastinate.py) is applied after storeflow's migrations, under the same lock.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from storeflow.db import procrastinate
from storeflow.logs import get_logger

if TYPE_CHECKING:
    from storeflow.db.connect import Database

log = get_logger("db")

# pg_advisory_xact_lock key: "storeflow" as a stable 63-bit number
MIGRATION_LOCK_KEY = int(hashlib.sha1(b"storeflow-migrations").hexdigest()[:15], 16)
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_BOOTSTRAP = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]


def load_migrations() -> list[Migration]:
    """Every migration file shipped with the package, in version order."""
    found: list[Migration] = []
    folder = resources.files("storeflow.db").joinpath("migrations")
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise RuntimeError(f"duplicate migration numbers in {versions}")
    return found


def schema_fingerprint() -> str:
    """A hash of every migration, used to name test template databases."""
    digest = hashlib.sha256()
    for m in load_migrations():
        digest.update(f"{m.version}:{m.checksum};".encode())
    for p in procrastinate.load_migrations():
        digest.update(f"procrastinate:{p.name};".encode())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class MigrationReport:
    storeflow: list[Migration]
    procrastinate: list[str]  # its schema, or the names of its migrations applied by this call


def migrate(db: Database) -> list[Migration]:
    """Apply pending migrations (storeflow's, then procrastinate's); return storeflow's applied by this call."""
    return migrate_database(db).storeflow


def migrate_database(db: Database) -> MigrationReport:
    """Apply storeflow's pending migrations, then bring procrastinate's schema up to the installed version."""
    applied_now: list[Migration] = []
    with db.connect(autocommit=True) as conn:
        for migration in load_migrations():
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
                conn.execute(_BOOTSTRAP)
                row = conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = %s", (migration.version,)
                ).fetchone()
                if row:
                    continue
                conn.execute(migration.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
                applied_now.append(migration)
                log.info("applied migration %04d_%s", migration.version, migration.name, event="migrate")
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
            jobs_schema = procrastinate.apply(conn)
        for name in jobs_schema:
            log.info("applied %s", name, event="migrate")
    return MigrationReport(applied_now, jobs_schema)


def migration_status(db: Database) -> list[tuple[int, str, str]]:
    """(version, name, 'applied <time>' | 'pending') for every known migration."""
    with db.connect() as conn:
        conn.execute(_BOOTSTRAP)
        rows = conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
        applied = {r["version"]: r["applied_at"] for r in rows}
        conn.commit()
    return [
        (
            m.version,
            m.name,
            f"applied {applied[m.version]:%Y-%m-%d %H:%M:%S}" if m.version in applied else "pending",
        )
        for m in load_migrations()
    ]


def procrastinate_status(db: Database) -> list[tuple[str, str]]:
    """(name, state) of every migration of the installed procrastinate (its schema, its jobs' tables)."""
    with db.connect() as conn:
        rows = procrastinate.status(conn)
        conn.commit()
    return rows
