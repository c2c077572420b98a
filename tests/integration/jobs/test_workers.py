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
SELECT 'td_' || store_code AS k, count(*) AS n, round(sum(net_amount), 2)::float AS amt
FROM fact_td_orders WHERE order_date BETWEEN %s AND %s GROUP BY 1
UNION ALL
SELECT 'uc_' || store_code, count(*), round(sum(final_amount), 2)::float
FROM fact_uc_gst WHERE invoice_date BETWEEN %s AND %s GROUP BY 1
"""


def truth(jobs: JobsEnv, key: str, start: str, end: str) -> tuple[int, float]:
    sim = "tumbledry" if key.startswith("td") else "uclean"
    found = httpx.get(f"{jobs.host.urls[sim]}/_sandbox/truth", params={"store": key[3:], "from": start, "to": end})
    return found.json()["rows"], found.json()["net_amount"]


def facts(jobs: JobsEnv, start: str, end: str) -> dict[str, tuple[int, float]]:
    rows = jobs.rows(FACTS, start, end, start, end)  # row counts equal to the truth's: no duplicates
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
    # a one-shot tick a few seconds ahead (6 fields: the last is seconds) and a tick every 3 s
    jobs.add_schedule(job="crm.download", crm="all", stores="all", cron=f"{tick:%M %H} * * * {tick:%S}")
    jobs.add_schedule(job="jobs.cleanup", cron="* * * * * */3", id="cleanup-fast")
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
    }, jobs.rows(OUTCOMES)
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
    ledger = jobs.rows("SELECT store, status, count(*) AS n FROM download_ledger GROUP BY 1, 2")
    assert {(r["store"], r["status"]): r["n"] for r in ledger} == {
        ("a817", "ingested"): 1,
        ("sector56", "ingested"): 1,
        ("sushantlok1", "ingested"): 1,
    }
    detail = next(o["detail"] for o in outcomes if o["subject"] == "td_a817" and o["exit_code"] == 0)
    start, end = detail["from"], detail["to"]
    expected = {k: truth(jobs, k, start, end) for k in ("td_a817", "uc_sector56", "uc_sushantlok1")}
    assert facts(jobs, start, end) == expected
    # one alert, for the store that needs a human
    job_alerts = [b for b in receiver[1] if b.get("kind") == "job_failed"]
    assert [(a["subject"], a["exit_code"]) for a in job_alerts] == [("td_a668", 3)]
    assert "crm_download bootstrap --crm td --store a668" in " ".join(job_alerts[0]["actions"])

    # the fast schedule: every tick deferred exactly once across both workers
    def ticks() -> list[dict[str, Any]]:
        return jobs.rows(
            "SELECT (args->>'timestamp')::bigint AS ts, count(*) AS n FROM procrastinate_jobs "
            "WHERE task_name = 'jobs.fire_schedule' AND args->>'periodic_id' = 'cleanup-fast' GROUP BY 1"
        )

    jobs.wait_for("three cleanup ticks", lambda: len(ticks()) >= 3)
    found = ticks()
    assert len(found) >= 3 and {t["n"] for t in found} == {1}


def test_a_stopped_worker_hands_its_job_back_and_a_killed_one_s_job_runs_on_another(jobs: JobsEnv) -> None:
    window = ("2025-11-10", "2025-11-11")
    jobs.host.sim("tumbledry").report_delay = 8  # type: ignore[attr-defined]  # the job is mid-download for 8 s
    stopped = jobs.start_worker("stopped", "--queues", "crm", JOB_SHUTDOWN_GRACE_SECONDS="0.5")
    ran = jobs.cli("jobs", "run", "crm.download", "--crm", "td", "--store", "a817", "--from", window[0],
                   "--to", window[1])  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    job_id = int(re.search(r"job (\d+): crm.download td_a817", ran.stdout).group(1))  # type: ignore[union-attr]

    def mid_download(runs: int) -> bool:
        """The job is running and its `runs`-th CRM run is open (the portal is preparing the report)."""
        doing = jobs.rows("SELECT 1 FROM procrastinate_jobs WHERE id = %s AND status = 'doing'", job_id)
        opened = jobs.rows("SELECT count(*) AS n FROM pipeline_runs WHERE pipeline = 'crm' AND finished_at IS NULL")
        return bool(doing) and opened[0]["n"] >= runs

    # SIGTERM: the job does not finish within the grace period, so it is handed back (runs again)
    jobs.wait_for("the job to start on 'stopped'", lambda: mid_download(1))
    jobs.stopped.add("stopped")
    stopped.send_signal(signal.SIGTERM)
    assert stopped.wait(30) == 0
    assert jobs.rows("SELECT status::text AS s FROM procrastinate_jobs WHERE id = %s", job_id) == [{"s": "todo"}]

    # SIGKILL: no goodbye; the heartbeat stops, and the rescuer's stalled-job recovery runs the job again
    victim = jobs.start_worker("victim", "--queues", "crm")
    jobs.wait_for("the job to start on 'victim'", lambda: mid_download(2))
    jobs.stopped.add("victim")
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    jobs.host.sim("tumbledry").report_delay = 0.2  # type: ignore[attr-defined]
    jobs.start_worker("rescuer", "--queues", "crm")

    jobs.wait_for("the job to succeed", lambda: jobs.rows(
        "SELECT 1 FROM procrastinate_jobs WHERE id = %s AND status = 'succeeded'", job_id))  # fmt: skip
    outcomes = jobs.rows("SELECT * FROM job_outcomes WHERE job_id = %s ORDER BY attempt", job_id)
    assert [(o["exit_code"], o["failure"], o["detail"].get("worker")) for o in outcomes] == [
        (130, "handed_back", None),  # recorded by the stopping worker
        (0, None, "rescuer/browser"),  # the killed worker recorded nothing
    ]
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

    # the operator's view and hands: list the failures, fix the file, retry; cancel a finished job is refused
    failed = jobs.cli("jobs", "list", "--status", "failed")
    assert re.search(table_row(r"\d+", "crm.download", "crm", "failed", "1"), failed.stdout), failed.stdout
    sector56 = next(
        r["id"] for r in jobs.rows(CRM_JOBS) if r["args"]["store"] == "sector56" and r["status"] == "failed"
    )
    jobs.host.sim("uclean").report_faults.clear()  # type: ignore[attr-defined]
    assert jobs.cli("jobs", "retry", str(sector56)).returncode == 0
    jobs.wait_for("the retried job", lambda: jobs.rows(
        "SELECT 1 FROM procrastinate_jobs WHERE id = %s AND status = 'succeeded'", sector56))  # fmt: skip
    refused = jobs.cli("jobs", "cancel", str(sector56))
    assert refused.returncode == 2 and f"job {sector56} is not waiting or running" in refused.stderr
