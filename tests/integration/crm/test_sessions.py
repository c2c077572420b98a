"""Sessions: expiry (exit code 3 for OTP stores, auto re-login for the others), CLI bootstrap and status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from storeflow.crm.runner import RunSummary
from storeflow.sandbox.host import SandboxHost
from storeflow.settings import Settings

pytestmark = pytest.mark.integration


def test_expired_sessions_otp_store_needs_bootstrap_others_relogin(
    crm_sandbox: SandboxHost, crm_settings: Settings, run: Callable[..., RunSummary], conn: psycopg.Connection[Any]
) -> None:
    for sim in ("tumbledry", "uclean"):
        crm_sandbox.sim(sim).expire_sessions()
    summary = run(crm_settings, crm="all", store="all")
    by = {o.key: o for o in summary.outcomes}
    assert summary.exit_code == 3
    assert by["td_a668"].status == "needs_bootstrap" and by["uc_sector56"].status == "needs_bootstrap"
    assert (
        "crm_download bootstrap --crm td --store a668"
        in conn.execute("SELECT error FROM ingest_audit WHERE store = 'a668'").fetchone()["error"]
    )
    assert by["td_a817"].status == "ok" and by["uc_sushantlok1"].status == "ok"  # re-logged in by themselves
    rows = conn.execute("SELECT store_code, count(*) AS n FROM fact_td_orders GROUP BY 1").fetchall()
    assert [(r["store_code"], r["n"] > 0) for r in rows] == [("a817", True)]
    checks = {r["session_key"]: r["valid"] for r in conn.execute("SELECT session_key, valid FROM session_checks")}
    assert checks["td_a668"] is False
