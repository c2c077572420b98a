"""procrastinate's own schema, applied and upgraded by `storeflow db migrate` (db/migrate.py).

A fresh database gets procrastinate's ``schema.sql`` (which equals all of its migrations) and
every migration file name is recorded in ``procrastinate_schema_migrations``; after an upgrade of
the package, the migration files not recorded yet run in version order. Both happen inside the
caller's transaction, under storeflow's migration advisory lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata, resources
from typing import Any

from psycopg import Connection

BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS procrastinate_schema_migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
RECORD = "INSERT INTO procrastinate_schema_migrations (name) VALUES (%s) ON CONFLICT (name) DO NOTHING"
APPLIED = "SELECT name, applied_at FROM procrastinate_schema_migrations"
HAS_JOBS_TABLE = "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present"


@dataclass(frozen=True)
class ProcrastinateMigration:
    name: str
    sql: str


def procrastinate_version() -> str:
    return metadata.version("procrastinate")


def load_schema() -> str:
    return resources.files("procrastinate.sql").joinpath("schema.sql").read_text(encoding="utf-8")


def load_migrations() -> list[ProcrastinateMigration]:
    """procrastinate's migration files (``NN.NN.NN_NN_name.sql``), in version order."""
    folder = resources.files("procrastinate.sql").joinpath("migrations")
    found = [
        ProcrastinateMigration(entry.name.removesuffix(".sql"), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found, key=lambda m: m.name)


def apply(conn: Connection[Any]) -> list[str]:
    """Bring procrastinate's schema up to the installed version; returns what this call applied."""
    conn.execute(BOOKKEEPING)
    migrations = load_migrations()
    row = conn.execute(HAS_JOBS_TABLE).fetchone()
    if not (row and row["present"]):
        conn.execute(load_schema().encode())
        for migration in migrations:
            conn.execute(RECORD, (migration.name,))
        return [f"procrastinate {procrastinate_version()} schema"]
    applied = {r["name"] for r in conn.execute(APPLIED).fetchall()}
    if not applied:
        # the tables exist but were made outside storeflow (procrastinate's own CLI): take them as current
        for migration in migrations:
            conn.execute(RECORD, (migration.name,))
        return []
    done = []
    for migration in migrations:
        if migration.name not in applied:
            conn.execute(migration.sql.encode())
            conn.execute(RECORD, (migration.name,))
            done.append(migration.name)
    return done


def status(conn: Connection[Any]) -> list[tuple[str, str]]:
    """(migration name, 'applied <time>' | 'pending') for every procrastinate migration of this version."""
    conn.execute(BOOKKEEPING)
    applied = {r["name"]: r["applied_at"] for r in conn.execute(APPLIED).fetchall()}
    return [
        (m.name, f"applied {applied[m.name]:%Y-%m-%d %H:%M:%S}" if m.name in applied else "pending")
        for m in load_migrations()
    ]
