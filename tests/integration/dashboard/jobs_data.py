"""Jobs in procrastinate's real tables, made through procrastinate itself: its schema, `defer`, its worker
(one failing task), its fetch function (a job held by a worker) and its periodic-defer function."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import procrastinate
import psycopg
from procrastinate import PsycopgConnector

FAILED_ERROR = "portal answered HTTP 503 three times: Service Unavailable"
PERIODIC_ID = "crm.download:td:all"
PERIODIC_CRON = "15 7,11,15,19 * * *"
PERIODIC_TIMESTAMP = 1_780_000_000  # a tick already deferred


@dataclass
class SeededJobs:
    succeeded_id: int
    failed_id: int
    running_id: int
    periodic_job_id: int
    worker_id: int


def ensure_schema(db_url: str) -> None:
    """procrastinate's schema, unless `storeflow db migrate` already applied it to the template."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        present = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
    if present and present[0]:
        return
    app = procrastinate.App(connector=PsycopgConnector(conninfo=db_url))
    with app.open():
        app.schema_manager.apply_schema()


def make_app(db_url: str) -> procrastinate.App:
    """Stand-ins with storeflow's task names; a817 fails the way a CRM job does: its run records the error."""
    app = procrastinate.App(connector=PsycopgConnector(conninfo=db_url))

    @app.task(name="crm.download", queue="crm")
    def download(crm: str, store: str) -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            run = uuid.uuid4()
            conn.execute(
                "INSERT INTO pipeline_runs (run_id, pipeline, command, store) VALUES (%s, 'crm', 'job', %s)",
                (run, f"{crm}_{store}"),
            )
            time.sleep(0.05)  # an attempt lasts: its duration is measurable from the events
            if store == "a817":
                conn.execute(
                    "UPDATE pipeline_runs SET status = 'failed', finished_at = now(), error = %s WHERE run_id = %s",
                    (FAILED_ERROR, run),
                )
                raise RuntimeError(FAILED_ERROR)
            conn.execute("UPDATE pipeline_runs SET status = 'ok', finished_at = now() WHERE run_id = %s", (run,))

    @app.task(name="alerts.check", queue="alerts")
    def check() -> None:
        return None

    return app


def seed_jobs(db_url: str) -> SeededJobs:
    """One succeeded and one failed CRM job (run by procrastinate's worker), one alerts job a worker holds,
    and one periodic tick already deferred."""
    ensure_schema(db_url)
    app = make_app(db_url)
    with app.open():
        ok_id = app.tasks["crm.download"].defer(crm="td", store="a668")
        failed_id = app.tasks["crm.download"].defer(crm="td", store="a817")
    app.run_worker(queues=["crm"], wait=False, install_signal_handlers=False, listen_notify=False)
    with psycopg.connect(db_url, autocommit=True) as conn:
        worker = _one(conn, "SELECT procrastinate_register_worker_v1() AS id")
        with app.open():
            running_id = app.tasks["alerts.check"].defer()
        fetched = _one(conn, "SELECT id FROM procrastinate_fetch_job_v2(ARRAY['alerts'], %s)", (worker,))
        assert fetched == running_id, (fetched, running_id)
        periodic = _one(
            conn,
            "SELECT procrastinate_defer_periodic_job_v2('crm', 'td_all', NULL, 'crm.download', 0, %s, %s, %s) AS id",
            (PERIODIC_ID, PERIODIC_TIMESTAMP, '{"crm": "td", "store": "all"}'),
        )
    return SeededJobs(ok_id, failed_id, running_id, periodic, worker)


def _one(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return row[0]
