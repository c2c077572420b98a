"""`hallmark/store.py` against a real PostgreSQL: the run checkpoint's typed rows and the window read."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from storeflow.hallmark import store

pytestmark = pytest.mark.integration


def _run(conn: psycopg.Connection[Any], kind: str, start: str, end: str, items: dict[str, str], status: str) -> None:
    run_id = store.create_run(conn, kind, {"start": start, "end": end})
    store.add_items(conn, run_id, "order", [(rid, "C1", None) for rid in items])
    for rid, item_status in items.items():
        if item_status != store.ITEM_PENDING:
            store.update_item(conn, run_id, "order", rid, item_status)
    store.finish(conn, run_id, status, store.counts(conn, run_id), None)


def test_checkpoint_rows_are_typed_and_resume_finds_the_latest_unfinished_run(conn: psycopg.Connection[Any]) -> None:
    run_id = store.create_run(conn, "bulk-orders", {"start": "2025-03-01", "end": "2025-03-14"})
    store.add_items(conn, run_id, "order", [("3", "C1", {"row": 1}), ("1", "C2", None), ("2", None, None)])
    store.mark_searched(conn, run_id)
    store.update_item(conn, run_id, "order", "3", store.ITEM_DOWNLOADED, path="/x/order_3.json")
    store.update_item(conn, run_id, "order", "1", store.ITEM_FAILED, error="HTTP 500")
    tally = store.counts(conn, run_id)
    assert tally == store.Tally(downloaded=1, skipped=0, failed=1, pending=1)
    assert tally.as_dict() == {"downloaded": 1, "skipped": 0, "failed": 1, "pending": 1, "total": 3}
    store.finish(conn, run_id, store.RUN_STOPPED, tally, "rate limit", {"rate_limited": 2})

    assert store.todo(conn, run_id) == [store.RunItem("order", "1", "C2"), store.RunItem("order", "2", None)]
    run = store.find_resumable(conn, "bulk-orders")
    assert run is not None and (run.run_id, run.status, run.search_complete) == (run_id, "stopped", True)
    assert (run.downloaded, run.failed, run.last_error, run.params["end"]) == (1, 1, "rate limit", "2025-03-14")
    assert store.find_resumable(conn, "bulk-billing-documents") is None
    audit = conn.execute("SELECT status, summary FROM pipeline_runs WHERE run_id = %s", (run_id,)).fetchone()
    assert audit is not None and audit["status"] == "stopped" and audit["summary"]["rate_limited"] == 2

    assert store.downloaded_files(conn, run_id) == ["/x/order_3.json"]
    store.reopen(conn, run_id, run.kind)
    (latest,) = store.recent_runs(conn, 5)
    assert (latest.status, latest.finished_at, latest.last_error) == (store.RUN_RUNNING, None, None)
    assert store.last_run(conn) == latest


def test_last_successful_window_is_the_latest_end_of_a_complete_ok_run(conn: psycopg.Connection[Any]) -> None:
    assert store.last_successful_window(conn, "bulk-orders") is None
    _run(conn, "bulk-orders", "2025-03-01", "2025-03-14", {"1": store.ITEM_DOWNLOADED}, store.RUN_OK)
    _run(conn, "bulk-orders", "2025-03-15", "2025-03-31", {"2": store.ITEM_FAILED}, store.RUN_FAILED)
    _run(conn, "bulk-orders", "2025-04-01", "2025-04-30", {"3": store.ITEM_PENDING}, store.RUN_OK)  # --search-only
    _run(conn, "bulk-billing-documents", "2025-05-01", "2025-05-31", {}, store.RUN_OK)
    assert store.last_successful_window(conn, "bulk-orders") == date(2025, 3, 14)
    # a later backfill of an older window does not move the end back
    _run(conn, "bulk-orders", "2025-01-01", "2025-01-31", {"4": store.ITEM_SKIPPED}, store.RUN_OK)
    assert store.last_successful_window(conn, "bulk-orders") == date(2025, 3, 14)
    assert store.last_successful_window(conn, "bulk-billing-documents") == date(2025, 5, 31)


def test_session_checks_and_order_reads(conn: psycopg.Connection[Any]) -> None:
    assert store.session_state(conn) == store.SessionState()
    store.record_session_check(conn, "/s/hallmark.json", False)
    state = store.session_state(conn)
    assert state.invalid_detail == "saved session invalid" and state.invalid_at and state.valid_at is None
    store.record_session_check(conn, "/s/hallmark.json", True)
    assert store.session_state(conn).valid_at is not None
    row = conn.execute("SELECT session_key, pipeline, path, valid FROM session_checks").fetchone()
    assert row == {"session_key": "hallmark", "pipeline": "hallmark", "path": "/s/hallmark.json", "valid": True}

    assert store.order_totals(conn) == store.OrderTotals(0, 0, Decimal(0))
    assert store.freshness(conn) == store.Freshness(None, 0)
    conn.execute(
        "INSERT INTO orders (order_id, store_number, store_name, order_total, order_creation_date, line_count,"
        " raw_data) VALUES ('1', '9', 'Reston', 10.50, '2025-03-02', 2, '{}'), ('2', '9', 'Reston', 1.25,"
        " '2025-04-09', 1, '{}'), ('3', '12', 'Vienna', 2.00, NULL, 0, '{}')"
    )
    assert store.order_totals(conn) == store.OrderTotals(3, 3, Decimal("13.75"))
    assert store.freshness(conn) == store.Freshness(date(2025, 4, 9), 2)
    totals = {(t.store_number, t.month): (t.orders, t.total) for t in store.store_month_totals(conn)}
    assert totals == {
        ("9", "2025-03"): (1, Decimal("10.50")),
        ("9", "2025-04"): (1, Decimal("1.25")),
        ("12", None): (1, Decimal("2.00")),
    }
    assert store.load_stores(conn) == {}
