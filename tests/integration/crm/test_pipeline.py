"""Download + ingest against the simulators, real PostgreSQL and Chromium."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from storeflow.crm.progress import Progress
from storeflow.crm.runner import CrmRunConfig, DownloadOptions, RunSummary, portal_session, run_download
from storeflow.db.connect import Database
from storeflow.sandbox.host import SandboxHost
from storeflow.settings import Settings
from tests.integration.crm.conftest import with_crm

pytestmark = pytest.mark.integration
WINDOW = {"from": "2025-11-10", "to": "2025-11-11"}


def truth(host: SandboxHost, sim: str, store: str) -> dict[str, Any]:
    return httpx.get(f"{host.urls[sim]}/_sandbox/truth", params={"store": store, **WINDOW}).json()


def facts(conn: psycopg.Connection[Any]) -> dict[str, tuple[int, float]]:
    out = {}
    for row in conn.execute(
        "SELECT 'td_' || store_code AS k, count(*) AS n, sum(net_amount)::float AS amt FROM fact_td_orders GROUP BY 1 "
        "UNION ALL SELECT 'uc_' || store_code, count(*), sum(final_amount)::float FROM fact_uc_gst GROUP BY 1"
    ).fetchall():
        out[row["k"]] = (row["n"], round(row["amt"], 2))
    return out


def test_all_stores_every_mode_match_truth_and_rerun_converges(
    crm_sandbox: SandboxHost, crm_settings: Settings, run: Callable[..., RunSummary], conn: psycopg.Connection[Any]
) -> None:
    modes = {s.key: s.mode for s in crm_settings.config.crm.stores}
    assert modes == {"td_a668": "browser", "td_a817": "api", "uc_sector56": "export", "uc_sushantlok1": "api"}
    first = run(crm_settings)
    assert first.exit_code == 0, [o.as_dict() for o in first.outcomes]
    expected = {}
    for key in modes:
        sim = "tumbledry" if key.startswith("td") else "uclean"
        t = truth(crm_sandbox, sim, key[3:])
        expected[key] = (t["rows"], t["net_amount"])
    assert facts(conn) == expected
    audit = conn.execute(
        "SELECT store, status, inserted_rows, updated_rows FROM ingest_audit ORDER BY store"
    ).fetchall()
    assert [(a["store"], a["status"]) for a in audit] == [
        ("a668", "ok"), ("a817", "ok"), ("sector56", "ok"), ("sushantlok1", "ok")
    ]  # fmt: skip
    assert all(a["inserted_rows"] > 0 and a["updated_rows"] == 0 for a in audit)
    assert not list((crm_settings.config.crm.download_dir).glob("*"))  # deleted after ingestion
    assert (crm_settings.config.crm.profiles_dir / "td_a668.json").stat().st_mode & 0o777 == 0o600

    second = run(crm_settings)
    assert second.exit_code == 0
    assert facts(conn) == expected
    ledger = conn.execute("SELECT store, status FROM download_ledger WHERE run_id = %s", (second.run_id,))
    statuses = {r["store"]: r["status"] for r in ledger.fetchall()}
    assert statuses == {"a668": "duplicate", "a817": "duplicate", "sector56": "duplicate", "sushantlok1": "duplicate"}


def test_changed_rows_update_and_unchanged_stay(
    crm_sandbox: SandboxHost, crm_settings: Settings, run: Callable[..., RunSummary], conn: psycopg.Connection[Any]
) -> None:
    assert run(crm_settings, store="a817").exit_code == 0
    before = conn.execute("SELECT order_number, updated_at FROM fact_td_orders").fetchall()
    crm_sandbox.sim("tumbledry").revision = 1  # type: ignore[attr-defined]
    summary = run(crm_settings, store="a817")
    outcome = summary.outcomes[0]
    n = len(before)
    assert outcome.status == "ok" and outcome.inserted == 0 and 0 < outcome.updated < n
    after = {
        r["order_number"]: r["updated_at"] for r in conn.execute("SELECT order_number, updated_at FROM fact_td_orders")
    }
    untouched = sum(1 for r in before if after[r["order_number"]] == r["updated_at"])
    assert untouched == n - outcome.updated
    t = truth(crm_sandbox, "tumbledry", "a817")
    total = conn.execute("SELECT sum(net_amount)::float AS s FROM fact_td_orders").fetchone()
    assert round(total["s"], 2) == t["net_amount"]


@pytest.mark.parametrize(
    ("fault", "status", "error"),
    [
        ({"kind": "corrupt"}, "failed", "not an XLSX file"),
        ({"kind": "truncated"}, "failed", "not a readable XLSX file"),
        ({"kind": "missing_column"}, "failed", "missing column(s) 'Total Invoice Value'"),
        ({"kind": "zero_rows"}, "empty", "no data rows"),
    ],
)
def test_bad_files_never_reach_facts(
    crm_sandbox: SandboxHost,
    crm_settings: Settings,
    run: Callable[..., RunSummary],
    conn: psycopg.Connection[Any],
    fault: dict[str, str],
    status: str,
    error: str,
) -> None:
    httpx.post(f"{crm_sandbox.urls['uclean']}/_sandbox/report-faults", json={**fault, "store": "sector56"})
    summary = run(crm_settings, crm="uc", store="sector56")
    assert summary.exit_code == (1 if status == "failed" else 0)
    audit = conn.execute("SELECT status, error FROM ingest_audit").fetchone()
    assert audit["status"] == status and error in audit["error"]
    assert conn.execute("SELECT count(*) AS n FROM fact_uc_gst").fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM stg_uc_gst_report").fetchone()["n"] == 0
    if status == "failed":  # a failed file stays on disk for inspection
        assert list(crm_settings.config.crm.download_dir.glob("UC_GST_Sector56Gurugram_*"))


def test_td_api_missing_column_and_5xx_retry(
    crm_sandbox: SandboxHost, crm_settings: Settings, run: Callable[..., RunSummary], conn: psycopg.Connection[Any]
) -> None:
    base = crm_sandbox.urls["tumbledry"]
    httpx.post(f"{base}/_sandbox/faults", json={"status": 503, "count": 1, "path": "/reports/order-report"})
    ok = run(crm_settings, store="a817")
    assert ok.exit_code == 0 and ok.outcomes[0].inserted > 0  # retried past one 503
    httpx.post(f"{base}/_sandbox/faults", json={"status": 502, "count": 10, "path": "/reports/order-report"})
    bad = run(crm_settings, store="a817", start="2025-11-12", end="2025-11-12")
    assert bad.exit_code == 1 and "answered 502" in (bad.outcomes[0].error or "")
    httpx.delete(f"{base}/_sandbox/faults")
    httpx.post(f"{base}/_sandbox/report-faults", json={"kind": "missing_column", "store": "a817"})
    missing = run(crm_settings, store="a817", start="2025-11-13", end="2025-11-13")
    assert "missing column(s) 'Net Amount'" in (missing.outcomes[0].error or "")
    n = conn.execute("SELECT count(*) AS n FROM fact_td_orders WHERE order_date > '2025-11-11'").fetchone()["n"]
    assert n == 0


def test_second_run_of_a_store_is_locked_out(
    crm_settings: Settings,
    run: Callable[..., RunSummary],
    db_url: str,
    conn: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from storeflow.crm.store import try_lock_store, unlock_store
    from storeflow.db import connect

    with connect(db_url, autocommit=True) as other:  # another machine's run holding td_a817
        assert try_lock_store(other, "td_a817")
        summary = run(crm_settings, store="a817")
        assert summary.exit_code == 6 and summary.outcomes[0].status == "skipped"
        assert "skipped: already running (lock held)" in (summary.outcomes[0].error or "")
        assert any("td_a817: skipped: already running (lock held)" in r.getMessage() for r in caplog.records)
        assert conn.execute("SELECT count(*) AS n FROM fact_td_orders").fetchone()["n"] == 0
        audit = conn.execute("SELECT status, error FROM ingest_audit WHERE store = 'a817'").fetchall()
        assert [a["status"] for a in audit] == ["skipped"] and "lock held" in audit[0]["error"]
        assert conn.execute("SELECT count(*) AS n FROM download_ledger").fetchone()["n"] == 0
        unlock_store(other, "td_a817")
    assert run(crm_settings, store="a817").exit_code == 0


def test_retention_keep_files_and_retention_days(
    crm_settings: Settings, run: Callable[..., RunSummary], tmp_path: Path
) -> None:
    folder = crm_settings.config.crm.download_dir
    run(crm_settings, crm="uc", store="sushantlok1", keep_files=True)
    assert [p.name for p in folder.iterdir()] == ["UC_GST_SushantLok1Gurugram_2025-11-10_to_2025-11-11.json"]
    crm_settings = with_crm(crm_settings, retention_days=3)
    run(crm_settings, crm="uc", store="sushantlok1", start="2025-11-12", end="2025-11-12")
    assert len(list(folder.iterdir())) == 2  # kept for 3 days
    import os

    old = folder / "UC_GST_SushantLok1Gurugram_2025-11-10_to_2025-11-11.json"
    os.utime(old, (1_600_000_000, 1_600_000_000))
    run(crm_settings, crm="uc", store="sushantlok1", start="2025-11-13", end="2025-11-13")
    assert not old.exists() and len(list(folder.iterdir())) == 2


def test_uc_generate_mode_and_td_slow_report_generation(
    crm_sandbox: SandboxHost, crm_settings: Settings, run: Callable[..., RunSummary], conn: psycopg.Connection[Any]
) -> None:
    by_key = {s.key: s for s in crm_settings.config.crm.stores}
    by_key["uc_sushantlok1"].mode = "generate"  # the spec's POST generateGST
    clients = crm_sandbox.sim("uclean").file_clients  # type: ignore[attr-defined]
    clients.clear()
    gen = run(crm_settings, crm="uc", store="sushantlok1")
    assert gen.exit_code == 0 and gen.outcomes[0].file == "UC_GST_SushantLok1Gurugram_2025-11-10_to_2025-11-11.xlsx"
    assert len(clients) == 1 and "Chrome" in clients[0]  # sent by the logged-in page, saved via expect_download
    t = truth(crm_sandbox, "uclean", "sushantlok1")
    row = conn.execute("SELECT count(*) AS n, sum(final_amount)::float AS s FROM fact_uc_gst").fetchone()
    assert (row["n"], round(row["s"], 2)) == (t["rows"], t["net_amount"])

    crm_settings = with_crm(crm_settings, download_timeout_seconds=4)
    httpx.post(
        f"{crm_sandbox.urls['tumbledry']}/_sandbox/report-faults", json={"kind": "slow", "store": "a668", "seconds": 30}
    )
    slow = run(crm_settings, crm="td", store="a668")
    assert slow.exit_code == 1 and "not ready within 4s" in (slow.outcomes[0].error or "")
    audit = conn.execute("SELECT status, error FROM ingest_audit WHERE store = 'a668'").fetchone()
    assert audit["status"] == "failed" and "download_timeout_seconds" in audit["error"]


def test_uc_export_in_page_retries_a_503_and_rejects_calls_without_bearer(
    crm_sandbox: SandboxHost, crm_settings: Settings, run: Callable[..., RunSummary], conn: psycopg.Connection[Any]
) -> None:
    base = crm_sandbox.urls["uclean"]
    query = "type=GST&format=excel&from_date=2025-11-10&to_date=2025-11-10"
    assert httpx.get(f"{base}/api/v1/sales/export-report?{query}").status_code == 401  # a plain navigation
    bad = httpx.get(f"{base}/api/v1/sales/export-report?{query}", headers={"Authorization": "Bearer x.y.z"})
    assert bad.status_code == 403
    clients = crm_sandbox.sim("uclean").file_clients  # type: ignore[attr-defined]
    clients.clear()
    httpx.post(f"{base}/_sandbox/faults", json={"status": 503, "count": 1, "path": "/api/v1/sales/export-report"})
    summary = run(crm_settings, crm="uc", store="sector56")
    assert (
        summary.exit_code == 0 and summary.outcomes[0].file == "UC_GST_Sector56Gurugram_2025-11-10_to_2025-11-11.xlsx"
    )
    assert len(clients) == 1 and "Chrome" in clients[0]  # the 503 answered before the handler; one retry
    t = truth(crm_sandbox, "uclean", "sector56")
    row = conn.execute("SELECT count(*) AS n, sum(final_amount)::float AS s FROM fact_uc_gst").fetchone()
    assert (row["n"], round(row["s"], 2)) == (t["rows"], t["net_amount"])


@pytest.mark.parametrize(("sim", "extra"), [("tumbledry", {"overdue_popup": False}), ("uclean", {})])
def test_sandbox_settings_and_report_fault_controls(crm_sandbox: SandboxHost, sim: str, extra: dict[str, Any]) -> None:
    base = crm_sandbox.urls[sim]
    before = httpx.get(f"{base}/_sandbox/state").json()
    try:
        state = httpx.post(f"{base}/_sandbox/settings", json={"revision": 2, "report_delay": 0, **extra}).json()
        assert state["revision"] == 2 and state["report_delay"] == 0.0
        assert all(state[k] == v for k, v in extra.items())
        refused = httpx.post(f"{base}/_sandbox/report-faults", json={"kind": "on_fire"})
        assert refused.status_code == 422 and "unknown report fault 'on_fire'" in refused.text
        added = httpx.post(f"{base}/_sandbox/report-faults", json={"kind": "zero_rows", "store": "x"}).json()
        assert [f["kind"] for f in added["report_faults"]] == ["zero_rows"]
    finally:
        httpx.post(f"{base}/_sandbox/settings", json={k: before[k] for k in ("revision", "report_delay", *extra)})
        crm_sandbox.sim(sim).report_faults.clear()  # type: ignore[attr-defined]


def test_runs_sharing_a_callers_portal_session_use_one_browser_and_survive_a_crash(
    crm_settings: Settings, database: Database, conn: psycopg.Connection[Any]
) -> None:
    """What a worker process does: concurrent runs (jobs) on one HTTP client and one Chromium it owns."""
    config = CrmRunConfig.from_settings(crm_settings)
    browser_stores = [s for s in crm_settings.config.crm.stores if s.key in ("td_a668", "uc_sector56")]

    def one(store: Any) -> Any:
        options = DownloadOptions(start="2025-11-10", end="2025-11-11", headless=True)
        return run_download(crm_settings, database, [store], options, Progress([store.key]), portal=portal)

    async def go() -> tuple[list[RunSummary], list[RunSummary], bool]:
        nonlocal portal
        async with portal_session(config, True) as portal:
            http, holder = portal
            first = list(await asyncio.gather(*(one(s) for s in browser_stores)))
            browser = await holder.get()
            await browser.close()  # Chromium dies between jobs: the next job gets a fresh one
            second = list(await asyncio.gather(*(one(s) for s in browser_stores)))
            fresh = await holder.get()
            assert fresh is not browser and fresh.is_connected()
            assert not http.is_closed  # the runs did not close the caller's session
        return first, second, http.is_closed

    portal: Any = None
    first, second, closed = asyncio.run(go())
    assert [s.exit_code for s in first + second] == [0, 0, 0, 0], [o.as_dict() for s in first for o in s.outcomes]
    assert [o.status for s in second for o in s.outcomes] == ["duplicate", "duplicate"]
    assert closed
    assert conn.execute("SELECT count(*) AS n FROM ingest_audit WHERE status = 'ok'").fetchone()["n"] == 2
