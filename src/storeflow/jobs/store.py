"""The jobs' own SQL: `job_outcomes` (exit code and why, per attempt), the reads `jobs run --wait` and
`jobs list` need from procrastinate's table, and the Hallmark window's last successful run.

Functions receive their connection from the caller (dict rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from storeflow.logs import redact_error

RECORD_OUTCOME = """
INSERT INTO job_outcomes (job_id, attempt, task_name, subject, exit_code, failure, detail, error, alerted, started_at)
VALUES (%(job_id)s, %(attempt)s, %(task)s, %(subject)s, %(exit_code)s, %(failure)s, %(detail)s, %(error)s,
        %(alerted)s, %(started_at)s)
ON CONFLICT (job_id, attempt) DO UPDATE SET exit_code = EXCLUDED.exit_code, failure = EXCLUDED.failure,
    detail = EXCLUDED.detail, error = EXCLUDED.error, alerted = EXCLUDED.alerted, finished_at = now()
"""
# the last outcome of the same work before this job: was the same failure already alerted?
PREVIOUS_OUTCOME = """
SELECT exit_code, failure, alerted FROM job_outcomes
WHERE task_name = %s AND subject IS NOT DISTINCT FROM %s AND job_id <> %s AND failure IS DISTINCT FROM 'handed_back'
ORDER BY finished_at DESC LIMIT 1
"""
JOB_STATES = """
SELECT j.id, j.task_name, j.status::text AS status, j.attempts, o.exit_code, o.error
FROM procrastinate_jobs j
LEFT JOIN LATERAL (
    SELECT exit_code, error FROM job_outcomes WHERE job_id = j.id ORDER BY attempt DESC LIMIT 1
) o ON true
WHERE j.id = ANY(%s)
"""
LIST_JOBS = """
SELECT j.id, j.task_name, j.queue_name, j.status::text AS status, j.attempts, j.lock, j.args,
       j.scheduled_at, j.worker_id, o.exit_code, o.error, o.finished_at,
       (SELECT min(e.at) FROM procrastinate_events e WHERE e.job_id = j.id AND e.type = 'deferred') AS deferred_at
FROM procrastinate_jobs j
LEFT JOIN LATERAL (
    SELECT exit_code, error, finished_at FROM job_outcomes WHERE job_id = j.id ORDER BY attempt DESC LIMIT 1
) o ON true
WHERE (%(status)s::text IS NULL OR j.status::text = %(status)s)
  AND (%(task)s::text IS NULL OR j.task_name = %(task)s)
  AND (%(task)s::text IS NOT NULL OR j.task_name <> 'jobs.retry_stalled')
ORDER BY j.id DESC
LIMIT %(limit)s
"""
LAST_HALLMARK_SUCCESS = """
SELECT (params->>'end')::date AS end_date FROM hallmark_runs
WHERE kind = %s AND status = 'ok' AND params->>'end' IS NOT NULL
ORDER BY finished_at DESC NULLS LAST LIMIT 1
"""
RUN_FILES = """
SELECT path FROM hallmark_run_items WHERE run_id = %s AND status = 'downloaded' AND path IS NOT NULL ORDER BY path
"""
# the given jobs unfinished, or any job of a pipeline queue waiting or running (maintenance ticks aside)
BUSY = """
SELECT EXISTS (
    SELECT 1 FROM procrastinate_jobs
    WHERE (id = ANY(%s) AND status NOT IN ('succeeded', 'failed', 'cancelled', 'aborted'))
       OR (queue_name <> 'maintenance' AND status IN ('todo', 'doing'))
) AS busy
"""
# the given jobs and those deferred after them (maintenance ticks aside), each with its last outcome
RESULTS_SINCE = """
SELECT j.id, j.task_name, j.status::text AS status, j.attempts, o.exit_code, o.detail, o.error
FROM procrastinate_jobs j
LEFT JOIN LATERAL (
    SELECT exit_code, detail, error FROM job_outcomes WHERE job_id = j.id ORDER BY attempt DESC LIMIT 1
) o ON true
WHERE j.id = ANY(%(ids)s) OR (j.id >= %(first)s AND j.queue_name <> 'maintenance')
ORDER BY j.id
"""
LAST_TICKS = """
SELECT periodic_id, max(defer_timestamp) AS ts FROM procrastinate_periodic_defers
WHERE task_name = 'jobs.fire_schedule' GROUP BY periodic_id
"""
DELETE_OLD_OUTCOMES = "DELETE FROM job_outcomes WHERE finished_at < now() - make_interval(days => %s)"


@dataclass(frozen=True)
class JobState:
    id: int
    task_name: str
    status: str
    attempts: int
    exit_code: int | None
    error: str | None


def record_outcome(conn: Connection[Any], **values: Any) -> None:
    """One attempt's outcome: job_id, attempt, task, subject, exit_code, failure, detail, error, alerted, started_at."""
    values["detail"] = Jsonb(values.get("detail") or {})
    values["error"] = redact_error(values.get("error"))
    conn.execute(RECORD_OUTCOME, values)


def already_alerted(conn: Connection[Any], task: str, subject: str | None, job_id: int, exit_code: int) -> bool:
    """Whether the same work's previous outcome was the same failure and its alert went out (alert once)."""
    row = conn.execute(PREVIOUS_OUTCOME, (task, subject, job_id)).fetchone()
    return bool(row and row["exit_code"] == exit_code and row["failure"] is not None and row["alerted"])


def job_states(conn: Connection[Any], ids: list[int]) -> list[JobState]:
    rows = conn.execute(JOB_STATES, (ids,)).fetchall()
    return [JobState(r["id"], r["task_name"], r["status"], r["attempts"], r["exit_code"], r["error"]) for r in rows]


def list_jobs(conn: Connection[Any], status: str | None, task: str | None, limit: int) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(LIST_JOBS, {"status": status, "task": task, "limit": limit}).fetchall()]


def last_hallmark_success(conn: Connection[Any], kind: str) -> date | None:
    """The end date of the last successful bulk run of ``kind`` (bulk-orders, bulk-billing-documents)."""
    row = conn.execute(LAST_HALLMARK_SUCCESS, (kind,)).fetchone()
    return row["end_date"] if row else None


def run_files(conn: Connection[Any], run_id: Any) -> list[str]:
    """The files a Hallmark run wrote (items downloaded by it)."""
    return [r["path"] for r in conn.execute(RUN_FILES, (run_id,)).fetchall()]


def busy_jobs(conn: Connection[Any], ids: list[int]) -> bool:
    row = conn.execute(BUSY, (ids,)).fetchone()
    return bool(row and row["busy"])


def results_since(conn: Connection[Any], ids: list[int]) -> list[dict[str, Any]]:
    rows = conn.execute(RESULTS_SINCE, {"ids": ids, "first": min(ids)}).fetchall()
    return [dict(r) for r in rows]


def last_ticks(conn: Connection[Any]) -> dict[str, datetime]:
    """periodic id -> the last tick procrastinate deferred for it (UTC)."""
    from datetime import UTC

    return {r["periodic_id"]: datetime.fromtimestamp(r["ts"], UTC) for r in conn.execute(LAST_TICKS).fetchall()}


def delete_old_outcomes(conn: Connection[Any], days: int) -> int:
    return conn.execute(DELETE_OLD_OUTCOMES, (days,)).rowcount


def utc_text(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else "-"
