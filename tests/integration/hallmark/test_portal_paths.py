"""Portal values that would leave OUTPUT_DIRECTORY fail their record and write nothing (real extract + JSON tree)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from storeflow.db.connect import Database
from tests.integration.hallmark.conftest import Portal, extract

pytestmark = pytest.mark.integration

ESCAPING_CUSTOMER = "/../../../../customer-escape"
ESCAPING_ORDER = "x/../../../../../order-escape"


def _files(folder: Path, *leave_out: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() and not any(p.is_relative_to(o) for o in leave_out)}


def test_traversal_ids_from_the_portal_fail_their_record_and_write_nothing_outside(
    portal: Portal, hm_settings: Any, with_session: Any, database: Database, conn: Any, tmp_path: Path
) -> None:
    settings = hm_settings()
    with_session(settings)
    good, bad = sorted(o for o, v in portal.sim.orders.items() if v.created is not None)[:2]
    sim_order = portal.sim.orders[bad]
    real_customer = sim_order.header["customerId"]
    sim_order.header["customerId"] = ESCAPING_CUSTOMER
    portal.sim.orders[ESCAPING_ORDER] = dataclasses.replace(portal.sim.orders[good], order_id=ESCAPING_ORDER)
    session_before = settings.SESSION_FILE.read_bytes()
    outside_before = _files(tmp_path.parent, settings.OUTPUT_DIRECTORY, settings.LOG_DIRECTORY)
    try:
        summary = extract(settings, database, kind="orders", ids=[good, bad, ESCAPING_ORDER])
    finally:
        sim_order.header["customerId"] = real_customer
        del portal.sim.orders[ESCAPING_ORDER]

    assert (summary.downloaded, summary.failed) == (1, 2)
    assert [p.name for p in _files(settings.OUTPUT_DIRECTORY)] == [f"order_{good}.json"]
    assert _files(tmp_path.parent, settings.OUTPUT_DIRECTORY, settings.LOG_DIRECTORY) == outside_before
    assert settings.SESSION_FILE.read_bytes() == session_before
    errors = {
        r["record_id"]: r["error"]
        for r in conn.execute("SELECT record_id, error FROM hallmark_run_items WHERE status = 'failed'").fetchall()
    }
    assert set(errors) == {bad, ESCAPING_ORDER}
    assert "customerId '/../../../../customer-escape' cannot be used in a file name" in errors[bad]
    assert "orderId 'x/../../../../../order-escape' cannot be used in a file name" in errors[ESCAPING_ORDER]
    # a run with failed records is stored as failed (it used to read the tally before counting it: "ok")
    run = conn.execute("SELECT status, failed FROM hallmark_runs").fetchone()
    audit = conn.execute("SELECT status FROM pipeline_runs WHERE pipeline = 'hallmark'").fetchone()
    assert (summary.status, run["status"], run["failed"], audit["status"]) == ("failed", "failed", 2, "failed")
