"""Read-only views of procrastinate's tables (3.x schema) for the dashboard, /metrics and the bench.

procrastinate owns its tables: `procrastinate_jobs` (one row per job, its status and attempts),
`procrastinate_events` (every status change, with a timestamp), `procrastinate_periodic_defers` (the
last tick each periodic task deferred) and `procrastinate_workers` (heartbeats). It keeps no error
text; a job's error is the one its pipeline wrote to `pipeline_runs` while the job ran.

Every function takes its connection (dict rows) from the caller and only reads, except `retry_job`,
which runs procrastinate's own retry function (what `JobManager.retry_job_by_id` executes).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

# events that end one attempt started by a `started` event
ATTEMPT_ENDS = ("succeeded", "failed", "deferred_for_retry", "aborted")
# a job's error: storeflow's job_outcomes row, else the pipeline run that started while the job ran
# (procrastinate stores none itself)
ERROR_SLACK_SECONDS = 5
DURATION_EDGES = (1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

HAS_SCHEMA = "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present"

LAST_DEFERS = """
SELECT d.task_name, d.periodic_id, d.defer_timestamp, d.job_id, j.status, j.queue_name
FROM procrastinate_periodic_defers d
LEFT JOIN procrastinate_jobs j ON j.id = d.job_id
WHERE d.defer_timestamp IS NOT NULL
ORDER BY d.defer_timestamp
"""

RUNNING = """
SELECT j.id, j.queue_name, j.task_name, j.args, j.attempts, j.worker_id, w.last_heartbeat,
       (SELECT max(e.at) FROM procrastinate_events e WHERE e.job_id = j.id AND e.type = 'started') AS started_at
FROM procrastinate_jobs j
LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
WHERE j.status = 'doing'
ORDER BY started_at NULLS LAST, j.id
"""

FAILED = """
SELECT j.id, j.queue_name, j.task_name, j.args, j.attempts, ev.started_at, ev.failed_at,
       {error} AS error
FROM procrastinate_jobs j
CROSS JOIN LATERAL (
    SELECT max(e.at) FILTER (WHERE e.type = 'started') AS started_at,
           max(e.at) FILTER (WHERE e.type = 'failed') AS failed_at
    FROM procrastinate_events e WHERE e.job_id = j.id
) ev
LEFT JOIN LATERAL (
    SELECT r.error
    FROM pipeline_runs r
    WHERE r.error IS NOT NULL
      AND r.pipeline = split_part(j.task_name, '.', 1)
      AND r.started_at >= ev.started_at - make_interval(secs => %(slack)s)
      AND r.started_at <= coalesce(ev.failed_at, now())
      AND (r.store IS NULL OR coalesce(j.args->>'store_key', j.args->>'store', j.args->>'account', 'all') = 'all'
           OR r.store = ANY(ARRAY[j.args->>'store_key', j.args->>'store', j.args->>'account',
                                  (j.args->>'crm') || '_' || (j.args->>'store')]))
    ORDER BY r.started_at DESC
    LIMIT 1
) run ON true
{outcome_join}
WHERE j.status = 'failed'
ORDER BY ev.failed_at DESC NULLS LAST, j.id DESC
LIMIT %(limit)s
"""

# storeflow's record of each attempt (jobs/store.py, table job_outcomes), when the database has it: its
# error is the job's own, so it wins over the pipeline run's
OUTCOME_JOIN = """
LEFT JOIN LATERAL (
    SELECT o.error FROM job_outcomes o WHERE o.job_id = j.id AND o.error IS NOT NULL ORDER BY o.attempt DESC LIMIT 1
) outcome ON true
"""
HAS_OUTCOMES = "SELECT to_regclass('job_outcomes') IS NOT NULL AS present"
FAILED_COUNT = "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'failed'"

COUNTS = """
SELECT queue_name, status::text AS status, count(*) AS n
FROM procrastinate_jobs GROUP BY 1, 2 ORDER BY 1, 2
"""

ATTEMPTS = """
WITH steps AS (
    SELECT e.job_id, e.type, e.at,
           lead(e.type) OVER (PARTITION BY e.job_id ORDER BY e.at, e.id) AS next_type,
           lead(e.at) OVER (PARTITION BY e.job_id ORDER BY e.at, e.id) AS next_at
    FROM procrastinate_events e
    WHERE e.type IN ('started', 'succeeded', 'failed', 'deferred_for_retry', 'aborted')
)
SELECT j.queue_name, j.task_name, s.next_type::text AS outcome, extract(epoch FROM s.next_at - s.at) AS seconds
FROM steps s JOIN procrastinate_jobs j ON j.id = s.job_id
WHERE s.type = 'started' AND s.next_type = ANY(%s::procrastinate_job_event_type[])
"""

RETRIED = """
SELECT count(*) FILTER (WHERE e.type = 'deferred_for_retry') AS automatic,
       count(*) FILTER (WHERE e.type = 'retried') AS manual
FROM procrastinate_events e JOIN procrastinate_jobs j ON j.id = e.job_id
WHERE %(task)s::text IS NULL OR j.task_name = %(task)s
"""

# procrastinate's own retry (sql/queries.sql `retry_job`): failed or doing -> todo, attempts + 1
RETRY_JOB = "SELECT procrastinate_retry_job_v2(%s, now(), NULL, NULL, NULL)"
JOB_STATUS = "SELECT status::text AS status FROM procrastinate_jobs WHERE id = %s"


class JobNotRetryable(ValueError):
    """The job does not exist or is not failed (only failed jobs are retried from the dashboard)."""


@dataclass(frozen=True)
class Schedule:
    key: str  # the periodic id (or the task name when the schedule has none)
    cron: str
    next_run_at: datetime
    last_run_at: datetime | None = None
    last_job_id: int | None = None
    last_status: str | None = None  # the status of the job the last tick deferred (None: cleaned up)


@dataclass(frozen=True)
class RunningJob:
    id: int
    queue: str
    task: str
    store: str | None
    worker_id: int | None
    started_at: datetime | None
    last_heartbeat: datetime | None
    attempts: int
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FailedJob:
    id: int
    queue: str
    task: str
    store: str | None
    attempts: int
    started_at: datetime | None
    failed_at: datetime | None
    error: str | None
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class Durations:
    """Attempt durations (started -> its end event) of one queue, task and outcome, as a histogram."""

    queue: str
    task: str
    outcome: str
    edges: tuple[float, ...] = DURATION_EDGES
    counts: list[int] = field(default_factory=list)  # per edge, values <= edge (not cumulative)
    count: int = 0
    total_seconds: float = 0.0
    values: list[float] = field(default_factory=list)

    def add(self, seconds: float) -> None:
        if not self.counts:
            self.counts = [0] * len(self.edges)
        index = bisect.bisect_left(self.edges, seconds)
        if index < len(self.edges):
            self.counts[index] += 1
        self.count += 1
        self.total_seconds += seconds
        self.values.append(seconds)

    @property
    def cumulative(self) -> list[int]:
        out, running = [], 0
        for n in self.counts or [0] * len(self.edges):
            running += n
            out.append(running)
        return out

    def percentile(self, q: float) -> float | None:
        """The nearest-rank q-th percentile (0-100) of the recorded durations."""
        if not self.values:
            return None
        ordered = sorted(self.values)
        rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
        return ordered[rank - 1]


def store_of(args: dict[str, Any] | None) -> str | None:
    """The store (or Hallmark account) a job works on, from its arguments: ``td_a668`` when they name the
    CRM and the code, the store key when they give one, else None (a job for every store)."""
    if not args:
        return None
    for key in ("store_key", "store", "account"):
        value = args.get(key)
        if isinstance(value, str) and value and value != "all":
            crm = args.get("crm")
            if key == "store" and isinstance(crm, str) and crm in ("td", "uc") and not value.startswith(f"{crm}_"):
                return f"{crm}_{value}"
            return value
    return None


def has_schema(conn: psycopg.Connection[Any]) -> bool:
    """Whether procrastinate's tables exist in this database (`storeflow db migrate` applies them)."""
    row = conn.execute(HAS_SCHEMA).fetchone()
    return bool(row and row["present"])


def next_fire(cron: str, after: datetime) -> datetime:
    """The first tick of ``cron`` strictly after ``after``, in UTC (procrastinate reads cron in UTC)."""
    from croniter import croniter

    start = after.astimezone(UTC) if after.tzinfo else after.replace(tzinfo=UTC)
    nxt: datetime = croniter(cron, start).get_next(datetime)
    return nxt.astimezone(UTC)


def schedules(
    conn: psycopg.Connection[Any], defined: Iterable[tuple[str, str]], now: datetime | None = None
) -> list[Schedule]:
    """Each ``(key, cron)`` schedule with its last tick (from procrastinate_periodic_defers, matched on
    periodic id, else on task name) and its next tick from the cron expression, in the order given."""
    now = now or datetime.now(UTC)
    by_periodic: dict[str, dict[str, Any]] = {}
    by_task: dict[str, dict[str, Any]] = {}
    for row in conn.execute(LAST_DEFERS).fetchall():  # ascending: the latest tick wins
        if row["periodic_id"]:
            by_periodic[row["periodic_id"]] = row
        by_task[row["task_name"]] = row
    out = []
    for key, cron in defined:
        row = by_periodic.get(key) or by_task.get(key)
        last = datetime.fromtimestamp(row["defer_timestamp"], UTC) if row else None
        out.append(
            Schedule(
                key=key,
                cron=cron,
                next_run_at=next_fire(cron, now),
                last_run_at=last,
                last_job_id=row["job_id"] if row else None,
                last_status=str(row["status"]) if row and row["status"] is not None else None,
            )
        )
    return out


def running_jobs(conn: psycopg.Connection[Any]) -> list[RunningJob]:
    """Jobs a worker holds now (status doing): worker, store from the arguments, when it started."""
    return [
        RunningJob(
            id=r["id"],
            queue=r["queue_name"],
            task=r["task_name"],
            store=store_of(r["args"]),
            worker_id=r["worker_id"],
            started_at=r["started_at"],
            last_heartbeat=r["last_heartbeat"],
            attempts=r["attempts"],
            args=r["args"] or {},
        )
        for r in conn.execute(RUNNING).fetchall()
    ]


def failed_jobs(conn: psycopg.Connection[Any], limit: int = 100) -> list[FailedJob]:
    """Failed jobs, newest first, each with the error its pipeline recorded while it ran (None if none)."""
    return [
        FailedJob(
            id=r["id"],
            queue=r["queue_name"],
            task=r["task_name"],
            store=store_of(r["args"]),
            attempts=r["attempts"],
            started_at=r["started_at"],
            failed_at=r["failed_at"],
            error=r["error"],
            args=r["args"] or {},
        )
        for r in conn.execute(_failed_query(conn), {"slack": ERROR_SLACK_SECONDS, "limit": limit}).fetchall()
    ]


def _failed_query(conn: psycopg.Connection[Any]) -> Any:
    row = conn.execute(HAS_OUTCOMES).fetchone()
    if row and row["present"]:
        return FAILED.format(error="coalesce(outcome.error, run.error)", outcome_join=OUTCOME_JOIN)
    return FAILED.format(error="run.error", outcome_join="")


def failed_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(FAILED_COUNT).fetchone()
    return int(row["n"]) if row else 0


def job_counts(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], int]:
    """{(queue, status): number of jobs} over the rows procrastinate holds."""
    return {(r["queue_name"], r["status"]): int(r["n"]) for r in conn.execute(COUNTS).fetchall()}


def job_durations(
    conn: psycopg.Connection[Any], outcomes: Sequence[str] = ATTEMPT_ENDS, edges: tuple[float, ...] = DURATION_EDGES
) -> list[Durations]:
    """Every attempt's duration (its `started` event to the event that ended it), grouped by queue, task
    and outcome (succeeded, failed, deferred_for_retry, aborted)."""
    groups: dict[tuple[str, str, str], Durations] = {}
    for r in conn.execute(ATTEMPTS, (list(outcomes),)).fetchall():
        key = (r["queue_name"], r["task_name"], r["outcome"])
        group = groups.get(key)
        if group is None:
            group = groups[key] = Durations(*key, edges=edges)
        group.add(float(r["seconds"]))
    return [groups[k] for k in sorted(groups)]


def retried_counts(conn: psycopg.Connection[Any], task: str | None = None) -> dict[str, int]:
    """Retries recorded in the events: ``automatic`` (a retry strategy or stalled-job recovery deferred the
    job again) and ``manual`` (`jobs retry` or the dashboard's Retry)."""
    row = conn.execute(RETRIED, {"task": task}).fetchone()
    return {"automatic": int(row["automatic"]) if row else 0, "manual": int(row["manual"]) if row else 0}


def retry_job(conn: psycopg.Connection[Any], job_id: int) -> None:
    """Put a failed job back in its queue now, through procrastinate's own retry function."""
    row = conn.execute(JOB_STATUS, (job_id,)).fetchone()
    if row is None:
        raise JobNotRetryable(f"job {job_id} does not exist (cleaned up?)")
    if row["status"] != "failed":
        raise JobNotRetryable(f"job {job_id} is {row['status']}, not failed: only failed jobs are retried")
    conn.execute(RETRY_JOB, (job_id,))
