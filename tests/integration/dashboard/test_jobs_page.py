"""The Jobs page, the overview's failed jobs, /metrics' job figures and the reads behind them, over jobs
procrastinate itself created in a real database."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from storeflow.jobs import queries
from storeflow.jobs.store import record_outcome
from storeflow.settings import Settings
from tests.integration.dashboard.conftest import CONFIG, one, serve
from tests.integration.dashboard.jobs_data import (
    FAILED_ERROR,
    PERIODIC_CRON,
    PERIODIC_ID,
    PERIODIC_TIMESTAMP,
    SeededJobs,
    seed_jobs,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def jobs(db_url: str) -> SeededJobs:
    return seed_jobs(db_url)


def test_reads_over_procrastinates_tables(jobs: SeededJobs, conn: psycopg.Connection[Any]) -> None:
    now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    found = queries.schedules(conn, [(PERIODIC_ID, PERIODIC_CRON), ("alerts.check", "*/5 * * * *")], now=now)
    assert [s.key for s in found] == [PERIODIC_ID, "alerts.check"]
    assert found[0].last_run_at == datetime.fromtimestamp(PERIODIC_TIMESTAMP, UTC)
    assert (found[0].last_job_id, found[0].last_status) == (jobs.periodic_job_id, "todo")
    assert found[0].next_run_at == datetime(2026, 12, 1, 11, 15, tzinfo=UTC)
    assert (found[1].last_run_at, found[1].last_job_id) == (None, None)
    assert found[1].next_run_at == datetime(2026, 12, 1, 10, 5, tzinfo=UTC)

    (running,) = queries.running_jobs(conn)
    assert (running.id, running.task, running.queue, running.worker_id) == (
        jobs.running_id, "alerts.check", "alerts", jobs.worker_id)  # fmt: skip
    assert running.store is None and running.started_at is not None and running.last_heartbeat is not None

    (failed,) = queries.failed_jobs(conn)
    assert (failed.id, failed.task, failed.store, failed.error) == (jobs.failed_id, "crm.download", "td_a817",
                                                                   FAILED_ERROR)  # fmt: skip
    assert failed.attempts == 1 and failed.failed_at is not None and failed.started_at <= failed.failed_at
    assert queries.failed_count(conn) == 1

    assert queries.job_counts(conn) == {
        ("crm", "succeeded"): 1, ("crm", "failed"): 1, ("crm", "todo"): 1, ("alerts", "doing"): 1}  # fmt: skip
    durations = {(d.queue, d.task, d.outcome): d for d in queries.job_durations(conn)}
    assert set(durations) == {("crm", "crm.download", "succeeded"), ("crm", "crm.download", "failed")}
    for d in durations.values():
        assert d.count == 1 and d.total_seconds > 0 and d.cumulative[-1] == 1
    assert queries.retried_counts(conn) == {"automatic": 0, "manual": 0}


def test_a_failed_jobs_own_outcome_is_its_error(jobs: SeededJobs, conn: psycopg.Connection[Any]) -> None:
    # storeflow's record of the attempt (job_outcomes, written by the worker) wins over the pipeline run's error
    record_outcome(
        conn, job_id=jobs.failed_id, attempt=1, task="crm.download", subject="td_a817", exit_code=1,
        failure="transient", detail="{}", error="portal timed out after 120 s", alerted=False, started_at=None,
    )  # fmt: skip
    conn.commit()
    (failed,) = queries.failed_jobs(conn)
    assert (failed.id, failed.error) == (jobs.failed_id, "portal timed out after 120 s")


def test_retry_puts_a_failed_job_back_and_refuses_others(jobs: SeededJobs, conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(queries.JobNotRetryable, match=f"job {jobs.succeeded_id} is succeeded, not failed"):
        queries.retry_job(conn, jobs.succeeded_id)
    with pytest.raises(queries.JobNotRetryable, match="job 999999 does not exist"):
        queries.retry_job(conn, 999_999)
    queries.retry_job(conn, jobs.failed_id)
    conn.commit()
    row = one(conn, "SELECT status, attempts FROM procrastinate_jobs WHERE id = %s", (jobs.failed_id,))
    assert (row["status"], row["attempts"]) == ("todo", 2)
    assert queries.retried_counts(conn) == {"automatic": 0, "manual": 1}
    assert queries.failed_jobs(conn) == []


def test_store_of_job_arguments() -> None:
    assert queries.store_of({"crm": "td", "store": "a668"}) == "td_a668"
    assert queries.store_of({"crm": "td", "store": "td_a668"}) == "td_a668"
    assert queries.store_of({"crm": "td", "store": "all"}) is None
    assert queries.store_of({"account": "hallmark-main"}) == "hallmark-main"
    assert queries.store_of({}) is None and queries.store_of(None) is None


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def test_jobs_page_lists_and_retries(
    jobs: SeededJobs, dash_settings: Callable[..., Settings], db_url: str, conn: psycopg.Connection[Any]
) -> None:
    settings = dash_settings()
    with serve(settings, db_url) as base, httpx.Client(base_url=base, follow_redirects=False) as client:
        page = client.get("/dashboard/jobs")
        assert page.status_code == 200, page.text
        failed = page.text[page.text.index('data-testid="failed"') :]
        assert f'data-job="{jobs.failed_id}"' in failed and FAILED_ERROR in failed and "td_a817" in failed
        running = page.text[page.text.index('data-testid="running"') : page.text.index('data-testid="failed"')]
        assert f"#{jobs.running_id}" in running and f"worker {jobs.worker_id}" in running
        assert '<td class="r" data-status="failed">1</td>' in page.text  # the counts table, crm row

        overview = client.get("/dashboard").text
        todo = overview[overview.index('<ol class="todo">') : overview.index("</ol>")]
        assert f"job #{jobs.failed_id} crm.download" in todo and FAILED_ERROR in todo
        assert f"storeflow jobs retry {jobs.failed_id}" in todo

        stale = client.post("/dashboard/jobs/retry", data={"csrf": "forged", "job_id": jobs.failed_id})
        assert stale.status_code == 403
        assert one(conn, "SELECT status FROM procrastinate_jobs WHERE id = %s", (jobs.failed_id,))["status"] == "failed"
        conn.commit()

        token = _csrf(page.text)
        wrong = client.post("/dashboard/jobs/retry", data={"csrf": token, "job_id": jobs.succeeded_id})
        assert wrong.status_code == 303 and "error=" in wrong.headers["location"]
        assert "not failed" in client.get(wrong.headers["location"]).text

        done = client.post("/dashboard/jobs/retry", data={"csrf": token, "job_id": jobs.failed_id})
        assert done.status_code == 303 and done.headers["location"] == f"/dashboard/jobs?retried={jobs.failed_id}"
        row = one(conn, "SELECT status, attempts FROM procrastinate_jobs WHERE id = %s", (jobs.failed_id,))
        assert (row["status"], row["attempts"]) == ("todo", 2)
        after = client.get(done.headers["location"]).text
        assert "No failed jobs." in after and f"Job {jobs.failed_id} is back in its queue" in after
        assert "job #" not in client.get("/dashboard").text


def test_jobs_page_shows_each_schedule_with_its_last_and_next_run(
    jobs: SeededJobs, make_settings: Callable[..., Settings], db_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "storeflow.toml"
    config.write_text(
        CONFIG.format(profiles=tmp_path / "profiles")
        + f'\n[[schedule]]\nid = "{PERIODIC_ID}"\njob = "crm.download"\ncrm = "td"\nstores = "all"\n'
        f'cron = "{PERIODIC_CRON}"\n\n[[schedule]]\njob = "alerts.check"\ncron = "*/5 * * * *"\n',
        encoding="utf-8",
    )
    settings = make_settings(db_url=db_url, config=config)
    with serve(settings, db_url) as base:
        page = httpx.get(base + "/dashboard/jobs").text
    table = page[page.index('data-testid="schedules"') : page.index('data-testid="running"')]
    ours = table[table.index(f'data-schedule="{PERIODIC_ID}"') :].split("</tr>")[0]
    last = datetime.fromtimestamp(PERIODIC_TIMESTAMP, UTC).strftime("%Y-%m-%d %H:%M")
    assert last in ours and f"#{jobs.periodic_job_id}" in ours and PERIODIC_CRON in ours
    nxt = queries.next_fire(PERIODIC_CRON, datetime.now(UTC)).strftime("%Y-%m-%d %H:%M")
    assert nxt in ours
    alerts = table[table.index('data-schedule="alerts.check:') :].split("</tr>")[0]
    assert "never fired" in alerts and "*/5 * * * *" in alerts


def test_retry_needs_a_login_off_loopback(
    jobs: SeededJobs, dash_settings: Callable[..., Settings], db_url: str, conn: psycopg.Connection[Any]
) -> None:
    settings = dash_settings(DASHBOARD_USERNAME="ops", DASHBOARD_PASSWORD="correct-horse-42")
    with serve(settings, db_url, bound_host="0.0.0.0") as base, httpx.Client(base_url=base) as client:
        assert client.get("/dashboard/jobs", headers={"accept": "text/html"}, follow_redirects=False).status_code == 303
        refused = client.post("/dashboard/jobs/retry", data={"csrf": "x", "job_id": jobs.failed_id})
        assert refused.status_code == 401
        assert one(conn, "SELECT status FROM procrastinate_jobs WHERE id = %s", (jobs.failed_id,))["status"] == "failed"
        conn.commit()
        page = client.get("/dashboard/jobs", auth=("ops", "correct-horse-42"))
        assert page.status_code == 200 and FAILED_ERROR in page.text


def test_metrics_count_jobs_and_their_durations(
    jobs: SeededJobs, dash_settings: Callable[..., Settings], db_url: str
) -> None:
    with serve(dash_settings(), db_url) as base:
        text = httpx.get(base + "/metrics").text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("storeflow_jobs", queue="crm", status="succeeded") == 1
    assert value("storeflow_jobs", queue="crm", status="failed") == 1
    assert value("storeflow_jobs", queue="crm", status="todo") == 1
    assert value("storeflow_jobs", queue="alerts", status="doing") == 1
    assert value("storeflow_jobs", queue="alerts", status="failed") == 0
    for outcome in ("succeeded", "failed"):
        labels = {"queue": "crm", "task": "crm.download", "outcome": outcome}
        assert value("storeflow_job_duration_seconds_count", **labels) == 1
        assert value("storeflow_job_duration_seconds_bucket", le="+Inf", **labels) == 1
        assert value("storeflow_job_duration_seconds_sum", **labels) > 0
    assert value("storeflow_job_retries_total", kind="manual") == 0


def test_a_database_without_the_jobs_schema_says_so(
    dash_settings: Callable[..., Settings], db_url: str, conn: psycopg.Connection[Any]
) -> None:
    # a database that lost procrastinate's schema (or one from before it was applied)
    conn.execute("DROP TABLE IF EXISTS procrastinate_jobs CASCADE")
    conn.commit()
    with serve(dash_settings(), db_url) as base:
        page = httpx.get(base + "/dashboard/jobs")
        metrics = httpx.get(base + "/metrics").text
    assert page.status_code == 200 and "storeflow db migrate" in page.text
    assert "storeflow_up 1.0" in metrics and "storeflow_jobs{" not in metrics
