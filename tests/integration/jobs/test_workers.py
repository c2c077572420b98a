"""Real `storeflow worker` processes against the CRM simulators and a real database (issue 12)."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
from typing import Any

import httpx
import pytest

from tests.integration.jobs.conftest import JobsEnv

pytestmark = pytest.mark.integration

CRM_JOBS = "SELECT * FROM procrastinate_jobs WHERE task_name = 'crm.download' ORDER BY id"
OUTCOMES = "SELECT * FROM job_outcomes WHERE task_name = 'crm.download' ORDER BY job_id, attempt"
FACTS = """
SELECT 'td_' || store_code AS k, count(*) AS n, round(sum(net_amount), 2)::float AS amt,
       count(DISTINCT order_number) AS keys
FROM fact_td_orders WHERE order_date BETWEEN %s AND %s GROUP BY 1
UNION ALL
SELECT 'uc_' || store_code, count(*), round(sum(final_amount), 2)::float, count(DISTINCT invoice_number)
FROM fact_uc_gst WHERE invoice_date BETWEEN %s AND %s GROUP BY 1
"""


def truth(jobs: JobsEnv, key: str, start: str, end: str) -> tuple[int, float]:
    sim = "tumbledry" if key.startswith("td") else "uclean"
    found = httpx.get(f"{jobs.host.urls[sim]}/_sandbox/truth", params={"store": key[3:], "from": start, "to": end})
    return found.json()["rows"], found.json()["net_amount"]


def facts(jobs: JobsEnv, start: str, end: str) -> dict[str, tuple[int, float]]:
    rows = jobs.rows(FACTS, start, end, start, end)
    assert all(r["n"] == r["keys"] for r in rows), rows  # no duplicates
    return {r["k"]: (r["n"], r["amt"]) for r in rows}


def table_row(*cells: str) -> str:
    """A regex for one row of a rich table printed by the CLI (cells separated by spaces and box lines)."""
    return r"[\s│]+".join(cells)


def finished(jobs: JobsEnv, count: int) -> list[dict[str, Any]] | None:
    rows = jobs.rows(CRM_JOBS)
    done = len(rows) == count and all(r["status"] in ("succeeded", "failed") for r in rows)
    return rows if done else None


def test_two_workers_run_a_schedule_for_four_stores_once_each(jobs: JobsEnv, receiver: tuple[str, list[Any]]) -> None:
    # a817 (TumbleDry API) answers 503 for both tries of its first attempt: the job retries and succeeds;
    # a668 has lost its session and needs an OTP: needs bootstrap, one attempt, one alert
    httpx.post(
        f"{jobs.host.urls['tumbledry']}/_sandbox/faults",
        json={"status": 503, "count": 2, "path": "/reports/order-report"},
    ).raise_for_status()
    (jobs.profiles / "td_a668.json").unlink()
    tick = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=6)
    # a one-shot tick a few seconds ahead (6 fields: the last is seconds) and a tick every 2 s
    jobs.add_schedule(job="crm.download", crm="all", stores="all", cron=f"{tick:%M %H} * * * {tick:%S}")
    jobs.add_schedule(job="jobs.cleanup", cron="* * * * * */2", id="cleanup-fast")
    jobs.start_worker("w1", "--browsers", "2")
    jobs.start_worker("w2", "--browsers", "2")

    rows = jobs.wait_for("four crm.download jobs to finish", lambda: finished(jobs, 4))
    by_store = {f"{r['args']['crm']}_{r['args']['store']}": r for r in rows}
    assert sorted(by_store) == ["td_a668", "td_a817", "uc_sector56", "uc_sushantlok1"]  # one job per store
    assert {k: (r["status"], r["attempts"]) for k, r in by_store.items()} == {
        "td_a668": ("failed", 1),  # permanent: not retried
        "td_a817": ("succeeded", 2),  # transient 503: retried once
        "uc_sector56": ("succeeded", 1),
        "uc_sushantlok1": ("succeeded", 1),
    }
    outcomes = jobs.rows(OUTCOMES)
    assert {(o["subject"], o["attempt"]): (o["exit_code"], o["failure"]) for o in outcomes} == {
        ("td_a668", 1): (3, "permanent"),
        ("td_a817", 1): (1, "transient"),
        ("td_a817", 2): (0, None),
        ("uc_sector56", 1): (0, None),
        ("uc_sushantlok1", 1): (0, None),
    }
    assert {o["detail"]["worker"].split("/")[0] for o in outcomes} == {"w1", "w2"}  # both workers took jobs
    # one tick of the CRM schedule, deferred once although two workers (four procrastinate workers) run
    fires = jobs.rows("SELECT * FROM procrastinate_jobs WHERE task_name = 'jobs.fire_schedule'")
    crm_fires = [f for f in fires if f["args"]["job"] == "crm.download"]
    assert len(crm_fires) == 1 and crm_fires[0]["status"] == "succeeded"
    # each store-window ran exactly once: one ingested file per store, facts equal the truth
    ledger = jobs.rows("SELECT store, count(*) AS n FROM download_ledger WHERE status = 'ok' GROUP BY store")
    assert {r["store"]: r["n"] for r in ledger} == {"a817": 1, "sector56": 1, "sushantlok1": 1}
    detail = next(o["detail"] for o in outcomes if o["subject"] == "td_a817" and o["exit_code"] == 0)
    start, end = detail["from"], detail["to"]
    expected = {k: truth(jobs, k, start, end) for k in ("td_a817", "uc_sector56", "uc_sushantlok1")}
    assert facts(jobs, start, end) == expected
    # one alert, for the store that needs a human
    job_alerts = [b for b in receiver[1] if b.get("kind") == "job_failed"]
    assert [(a["subject"], a["exit_code"]) for a in job_alerts] == [("td_a668", 3)]
    assert "crm_download bootstrap --crm td --store a668" in " ".join(job_alerts[0]["actions"])

    # the fast schedule: every tick deferred exactly once across both workers
    jobs.wait_for("three cleanup ticks", lambda: len(jobs.rows(
        "SELECT 1 FROM procrastinate_periodic_defers WHERE periodic_id = 'cleanup-fast'")) >= 3)  # fmt: skip
    ticks = jobs.rows(
        "SELECT (args->>'timestamp')::bigint AS ts, count(*) AS n FROM procrastinate_jobs "
        "WHERE task_name = 'jobs.fire_schedule' AND args->>'periodic_id' = 'cleanup-fast' GROUP BY 1"
    )
    assert len(ticks) >= 3 and {t["n"] for t in ticks} == {1}


def test_a_killed_worker_s_job_runs_again_on_the_other_worker(jobs: JobsEnv) -> None:
    window = ("2025-11-10", "2025-11-11")
    jobs.host.sim("tumbledry").report_delay = 8  # type: ignore[attr-defined]  # the job is mid-download for 8 s
    victim = jobs.start_worker("victim", "--queues", "crm")
    ran = jobs.cli("jobs", "run", "crm.download", "--crm", "td", "--store", "a817", "--from", window[0],
                   "--to", window[1])  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    job_id = int(re.search(r"job (\d+): crm.download td_a817", ran.stdout).group(1))  # type: ignore[union-attr]
    jobs.wait_for("the job to start", lambda: jobs.rows(
        "SELECT 1 FROM procrastinate_jobs WHERE id = %s AND status = 'doing'", job_id))  # fmt: skip
    jobs.wait_for("the portal to be asked for the report", lambda: jobs.rows(
        "SELECT 1 FROM pipeline_runs WHERE pipeline = 'crm' AND finished_at IS NULL"))  # fmt: skip
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    jobs.host.sim("tumbledry").report_delay = 0.2  # type: ignore[attr-defined]
    jobs.start_worker("rescuer", "--queues", "crm")

    jobs.wait_for("the job to succeed", lambda: jobs.rows(
        "SELECT 1 FROM procrastinate_jobs WHERE id = %s AND status = 'succeeded'", job_id))  # fmt: skip
    outcomes = jobs.rows("SELECT * FROM job_outcomes WHERE job_id = %s", job_id)
    assert [(o["exit_code"], o["detail"]["worker"]) for o in outcomes] == [(0, "rescuer/browser")]
    assert facts(jobs, *window) == {"td_a817": truth(jobs, "td_a817", *window)}
    assert jobs.rows("SELECT count(*) AS n FROM procrastinate_jobs WHERE task_name = 'crm.download'")[0]["n"] == 1


def test_jobs_run_wait_exits_with_the_worst_job_s_exit_code(jobs: JobsEnv) -> None:
    window = ["--from", "2025-11-10", "--to", "2025-11-11"]
    jobs.start_worker("w1")
    ok = jobs.cli("jobs", "run", "crm.download", "--crm", "td", "--store", "a817", *window, "--wait")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert re.search(table_row("crm.download", "td_a817", "succeeded", "1", "0"), ok.stdout), ok.stdout

    unknown = jobs.cli("jobs", "run", "crm.download", "--crm", "td", "--store", "nosuch", "--wait")
    assert unknown.returncode == 2 and "no enabled store 'nosuch'" in unknown.stderr

    # a bad file (permanent: exit 1, not retried) and a store that needs bootstrap (exit 3): the worst is 3
    httpx.post(f"{jobs.host.urls['uclean']}/_sandbox/report-faults", json={"kind": "missing_column",
               "store": "sector56"}).raise_for_status()  # fmt: skip
    (jobs.profiles / "td_a668.json").unlink()
    worst = jobs.cli("jobs", "run", "crm.download", "--crm", "all", "--store", "all", *window, "--wait")
    assert worst.returncode == 3, worst.stdout + worst.stderr
    states = {r["args"]["store"]: (r["status"], r["attempts"]) for r in jobs.rows(CRM_JOBS)[1:]}
    assert states == {"a668": ("failed", 1), "a817": ("succeeded", 1), "sector56": ("failed", 1),
                      "sushantlok1": ("succeeded", 1)}  # fmt: skip
    assert re.search(table_row("td_a668", "failed", "1", "3"), worst.stdout), worst.stdout
    assert re.search(table_row("uc_sector56", "failed", "1", "1", ".*missing column"), worst.stdout), worst.stdout
