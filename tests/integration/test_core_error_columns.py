"""Database error columns (run items, runs, pipeline_runs, ingest_audit, sync_queue/sync_log) hold redacted
text (their writers call storeflow.logs.redact_error): the dashboard shows what they hold."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest

from storeflow.crm.store import FileInfo, record_audit
from storeflow.esl.store import ClaimedItem, ItemResult, finish_params
from storeflow.hallmark import store

pytestmark = pytest.mark.integration

LEAKY = "GET /x answered 401: {'Authorization': 'Token tok-SECRET-1', 'Cookie': 'sid=ck-SECRET-2'} password=pw-SECRET-3"
SECRETS = ("tok-SECRET-1", "ck-SECRET-2", "pw-SECRET-3")


def _clean(values: list[Any]) -> None:
    text = " ".join(str(v) for v in values)
    assert text and all(secret not in text for secret in SECRETS), text
    assert "***" in text


def test_hallmark_run_errors_are_redacted(conn: psycopg.Connection[Any]) -> None:
    run_id = store.create_run(conn, "orders", {"ids": ["1"]})
    store.add_items(conn, run_id, "order", [("1", None, None)])
    store.update_item(conn, run_id, "order", "1", "failed", error=LEAKY)
    store.finish(conn, run_id, "failed", store.counts(conn, run_id), LEAKY)
    conn.commit()
    item = conn.execute("SELECT error FROM hallmark_run_items").fetchone()
    run = conn.execute("SELECT last_error FROM hallmark_runs").fetchone()
    audit = conn.execute("SELECT error FROM pipeline_runs").fetchone()
    _clean([item["error"], run["last_error"], audit["error"]])


def test_crm_audit_errors_are_redacted(conn: psycopg.Connection[Any]) -> None:
    info = FileInfo(uuid.uuid4(), "td", "a668", "OrderReport", "browser", date(2025, 11, 12), date(2025, 11, 13))
    record_audit(conn, info, "failed", started_at=datetime.now(UTC), error=LEAKY)
    conn.commit()
    _clean([r["error"] for r in conn.execute("SELECT error FROM ingest_audit").fetchall()])


def test_esl_queue_and_log_errors_are_redacted() -> None:
    item = ClaimedItem(id=1, store_code="S1", product_id=7, operation="upsert", attempts=1)
    params = finish_params([ItemResult(item, "pending", "retry", error=LEAKY)], "w1")
    rows = json.loads(params["rows"])
    # FINISH writes each row's error to both sync_queue.last_error and sync_log.error
    assert len(rows) == 1
    _clean([r["error"] for r in rows])
