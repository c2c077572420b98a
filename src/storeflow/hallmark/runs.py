"""The run checkpoint in PostgreSQL (`hallmark_runs`, `hallmark_run_items`): what `--resume` continues."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from storeflow.logs import redact_error

RESUMABLE = ("running", "stopped", "failed")

INSERT_RUN = "INSERT INTO hallmark_runs (run_id, kind, params) VALUES (%s, %s, %s)"
# the core's cross-pipeline audit row (dashboard "last runs"), same run_id
INSERT_PIPELINE_RUN = """
INSERT INTO pipeline_runs (run_id, pipeline, command, summary) VALUES (%s, 'hallmark', %s, %s)
ON CONFLICT (run_id) DO UPDATE SET status = 'running', finished_at = NULL, error = NULL
"""
FINISH_PIPELINE_RUN = """
UPDATE pipeline_runs SET status = %s, finished_at = now(), summary = %s, error = %s WHERE run_id = %s
"""
LATEST_UNFINISHED = """
SELECT run_id, kind, params, status, search_complete FROM hallmark_runs
WHERE status = ANY(%s) AND (%s::text IS NULL OR kind = %s)
ORDER BY started_at DESC LIMIT 1
"""
REOPEN_RUN = "UPDATE hallmark_runs SET status = 'running', finished_at = NULL, last_error = NULL WHERE run_id = %s"
MARK_SEARCHED = "UPDATE hallmark_runs SET search_complete = true WHERE run_id = %s"
INSERT_ITEM = """
INSERT INTO hallmark_run_items (run_id, kind, record_id, position, customer_id, search_row)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (run_id, kind, record_id) DO NOTHING
"""
TODO_ITEMS = """
SELECT kind, record_id, customer_id, status FROM hallmark_run_items
WHERE run_id = %s AND status IN ('pending', 'failed')
ORDER BY position, record_id
"""
UPDATE_ITEM = """
UPDATE hallmark_run_items
SET status = %s, error = %s, path = %s, attempts = attempts + %s, updated_at = now()
WHERE run_id = %s AND kind = %s AND record_id = %s
"""
COUNT_ITEMS = """
SELECT count(*) FILTER (WHERE status = 'downloaded') AS downloaded,
       count(*) FILTER (WHERE status = 'skipped') AS skipped,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) AS total
FROM hallmark_run_items WHERE run_id = %s
"""
FINISH_RUN = """
UPDATE hallmark_runs
SET status = %s, finished_at = now(), downloaded = %s, skipped = %s, failed = %s, last_error = %s
WHERE run_id = %s
"""
RECENT_RUNS = """
SELECT run_id, kind, status, started_at, finished_at, downloaded, skipped, failed, last_error
FROM hallmark_runs ORDER BY started_at DESC LIMIT %s
"""


def create_run(conn: Connection[Any], kind: str, params: dict[str, Any]) -> uuid.UUID:
    run_id = uuid.uuid4()
    conn.execute(INSERT_RUN, (run_id, kind, Jsonb(params)))
    conn.execute(INSERT_PIPELINE_RUN, (run_id, kind, Jsonb(params)))
    return run_id


def find_resumable(conn: Connection[Any], kind: str | None) -> dict[str, Any] | None:
    row = conn.execute(LATEST_UNFINISHED, (list(RESUMABLE), kind, kind)).fetchone()
    return None if row is None else dict(row)


def reopen(conn: Connection[Any], run_id: uuid.UUID, kind: str) -> None:
    conn.execute(REOPEN_RUN, (run_id,))
    conn.execute(INSERT_PIPELINE_RUN, (run_id, kind, Jsonb({"resumed": True})))


def mark_searched(conn: Connection[Any], run_id: uuid.UUID) -> None:
    conn.execute(MARK_SEARCHED, (run_id,))


def add_items(conn: Connection[Any], run_id: uuid.UUID, kind: str, rows: list[tuple[str, str | None, Any]]) -> None:
    """rows: (record_id, customer_id, search_row); position follows the given order."""
    with conn.cursor() as cur:
        cur.executemany(
            INSERT_ITEM,
            [
                (run_id, kind, rid, pos, cust, Jsonb(row) if row is not None else None)
                for pos, (rid, cust, row) in enumerate(rows)
            ],
        )


def todo(conn: Connection[Any], run_id: uuid.UUID) -> list[tuple[str, str, str | None]]:
    rows = conn.execute(TODO_ITEMS, (run_id,)).fetchall()
    return [(str(row["kind"]), str(row["record_id"]), row["customer_id"]) for row in rows]


def update_item(
    conn: Connection[Any],
    run_id: uuid.UUID,
    kind: str,
    record_id: str,
    status: str,
    error: str | None = None,
    path: str | None = None,
    attempted: bool = True,
) -> None:
    conn.execute(UPDATE_ITEM, (status, redact_error(error), path, 1 if attempted else 0, run_id, kind, record_id))


def counts(conn: Connection[Any], run_id: uuid.UUID) -> dict[str, int]:
    row = conn.execute(COUNT_ITEMS, (run_id,)).fetchone()
    keys = ("downloaded", "skipped", "failed", "pending", "total")
    if row is None:
        return dict.fromkeys(keys, 0)
    return {k: int(row[k] or 0) for k in keys}


def finish(
    conn: Connection[Any],
    run_id: uuid.UUID,
    status: str,
    tally: dict[str, int],
    error: str | None,
    portal: dict[str, int] | None = None,
) -> None:
    error = redact_error(error)
    conn.execute(FINISH_RUN, (status, tally["downloaded"], tally["skipped"], tally["failed"], error, run_id))
    conn.execute(FINISH_PIPELINE_RUN, (status, Jsonb({**tally, **(portal or {})}), error, run_id))


def recent(conn: Connection[Any], limit: int = 10) -> list[dict[str, Any]]:
    rows = conn.execute(RECENT_RUNS, (limit,)).fetchall()
    return [dict(r) for r in rows]
