"""Dashboard fixtures: pipeline data in the database, the app served on a free loopback port."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from storeflow.db.connect import Database
from storeflow.settings import Settings
from storeflow.web.app import create_app
from storeflow.web.server import serve_in_thread

HERE = Path(__file__).parent
NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()
MISSING = "missing column: Invoice Date"
RATE_LIMIT_STOP = "rate limit: Retry-After 600 s over the cap"
DEAD_ERROR = "error_code 7: pc is required"
CONFIG = """
[crm]
profiles_dir = "{profiles}"

[[crm.stores]]
crm = "td"
code = "a668"
name = "Uttam Nagar"
username_env = "TD_A668_USERNAME"
password_env = "TD_A668_PASSWORD"

[[crm.stores]]
crm = "td"
code = "a817"
name = "Kirti Nagar"
username_env = "TD_A817_USERNAME"
password_env = "TD_A817_PASSWORD"

[[crm.stores]]
crm = "uc"
code = "UC567"
name = "Sector 56 Gurugram"
username_env = "UC567_USERNAME"
password_env = "UC567_PASSWORD"

[dashboard]
stale_after_hours = 24
queue_age_alert_seconds = 300
alert_interval_seconds = 3600
"""


@pytest.fixture
def dash_settings(make_settings: Callable[..., Settings], db_url: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings with three CRM stores, profiles and a Hallmark session file under tmp_path."""

    def build(**env: str) -> Settings:
        config = tmp_path / "storeflow.toml"
        config.write_text(CONFIG.format(profiles=tmp_path / "profiles"), encoding="utf-8")
        return make_settings(db_url=db_url, config=config, **env)

    return build


@contextmanager
def serve(settings: Settings, db_url: str, bound_host: str = "127.0.0.1", db_timeout: float = 10.0) -> Iterator[str]:
    """The storeflow app in a uvicorn thread on a free 127.0.0.1 port; yields its base URL."""
    db = Database(db_url, kind="test", timeout=db_timeout)
    try:
        with serve_in_thread(create_app(settings, db, bound_host=bound_host), "dashboard test app") as url:
            yield url
    finally:
        db.close()


def one(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    """The single row of ``query``; a missing row fails the test naming the query."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        pytest.fail(f"no row for: {query}")
    return row


def _id(row: Any) -> Any:
    if row is None:
        pytest.fail("INSERT ... RETURNING id returned no row")
    return row["id"]


def seed(conn: psycopg.Connection[Any], profiles: Path, session_file: Path) -> dict[str, Any]:
    """A realistic mix in the pipelines' real tables: healthy, failing and bootstrap-needing CRM stores,
    a stopped Hallmark run, an ESL store with dead letters and one with an old queue."""
    ago = lambda **kw: NOW - timedelta(**kw)  # noqa: E731
    run = uuid.uuid4()
    ledger_ids = {}
    ledger = [  # crm, store, report, file, md5, size, downloaded_at, status, error
        ("td", "a668", "OrderReport", "TD_OrderReport_UttamNagar_a.xlsx", "m1", 20480, ago(hours=2), "ingested", None),
        ("td", "a817", "OrderReport", "TD_OrderReport_KirtiNagar_a.xlsx", "m2", 18000, ago(hours=30), "ingested", None),
        (
            "uc",
            "UC567",
            "GST",
            "UC_GST_Sector56_a.xlsx",
            "m3",
            9000,
            ago(hours=3),
            "failed",
            "missing column: Invoice Date",
        ),
    ]
    for crm, store, rtype, name, md5, size, at, status, error in ledger:
        ledger_ids[store] = _id(
            conn.execute(
                "INSERT INTO download_ledger (run_id, crm, store, report_type, file_name, md5, size, downloaded_at,"
                " status, from_date, to_date, error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " RETURNING id",
                (run, crm, store, rtype, name, md5, size, at, status, at.date() - timedelta(days=1), at.date(), error),
            ).fetchone()
        )
    audit = [
        ("td", "a668", 120, 4, 1, ago(hours=2), "ok", None),
        ("td", "a817", 80, 0, 0, ago(hours=30), "ok", None),
        ("td", "a817", 0, 0, 0, ago(hours=1), "needs_bootstrap", "session expired: login page shown"),
        ("uc", "UC567", 0, 0, 0, ago(hours=3), "failed", "missing column: Invoice Date"),
        ("uc", "UC567", 55, 2, 0, ago(hours=20), "ok", None),
    ]
    for crm, store, ins, upd, rej, at, status, error in audit:
        got_file = status != "needs_bootstrap"  # an expired session never got a file
        conn.execute(
            "INSERT INTO ingest_audit (run_id, crm, store, from_date, to_date, inserted_rows, updated_rows,"
            " rejected_rows, md5, file_name, started_at, finished_at, status, error)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                *(run, crm, store, at.date() - timedelta(days=1), at.date(), ins, upd, rej),
                *("x" if got_file else None, f"{store}.xlsx" if got_file else None, at, at + timedelta(seconds=7)),
                status,
                error,
            ),
        )
    for i in range(10):
        day = TODAY - timedelta(days=i)
        conn.execute(
            "INSERT INTO fact_td_orders (run_id, ledger_id, store_code, order_number, order_date, net_amount, raw_data)"
            " VALUES (%s, %s, %s, %s, %s, %s, '{}')",
            (run, ledger_ids["a668"], "a668", f"O{i}", day, 1000 + 37 * i),
        )
        conn.execute(
            "INSERT INTO fact_uc_gst (run_id, ledger_id, store_code, order_number, invoice_date, final_amount,"
            " raw_data) VALUES (%s, %s, %s, %s, %s, %s, '{}')",
            (run, ledger_ids["UC567"], "UC567", f"U{i}", day, 400 + 11 * i),
        )
    ok_run, stopped_run = uuid.uuid4(), uuid.uuid4()
    conn.execute(
        "INSERT INTO hallmark_runs (run_id, kind, params, started_at, finished_at, status, downloaded, skipped, failed,"
        " last_error) VALUES (%s, 'bulk-orders', '{}', %s, %s, 'ok', 40, 2, 0, NULL),"
        " (%s, 'bulk-orders', '{}', %s, %s, 'stopped', 12, 0, 3, %s)",
        (ok_run, ago(hours=26), ago(hours=25), stopped_run, ago(hours=1), ago(minutes=50), RATE_LIMIT_STOP),
    )
    for i, status in enumerate(["downloaded"] * 12 + ["failed"] * 3 + ["pending"] * 5):
        conn.execute(
            "INSERT INTO hallmark_run_items (run_id, kind, record_id, position, status)"
            " VALUES (%s, 'order', %s, %s, %s)",
            (stopped_run, f"R{i}", i, status),
        )
    conn.execute(
        "INSERT INTO stores (customer_id, store_number, store_name) VALUES"
        " ('C101', '101', 'Hallmark Store 101'), ('C102', '102', 'Hallmark Store 102')"
    )
    for i in range(6):
        number = "101" if i % 2 else "102"
        conn.execute(
            "INSERT INTO orders (order_id, customer_id, store_number, store_name, order_creation_date, order_total,"
            " raw_data) VALUES (%s, %s, %s, %s, %s, %s, '{}')",
            (f"H{i}", f"C{number}", number, f"Hallmark Store {number}", date(2026, 10 + i % 2, 5), 100 + i),
        )
    mapping = "INSERT INTO store_mappings (source_store_id, hipoink_store_code) VALUES (%s, %s) RETURNING id"
    m1 = _id(conn.execute(mapping, ("alpha.myshopify.com", "S1")).fetchone())
    m2 = _id(conn.execute(mapping, ("beta.myshopify.com", "S2")).fetchone())

    def product(mapping_id: int, shop: str, n: str) -> Any:
        return _id(
            conn.execute(
                "INSERT INTO products (store_mapping_id, source_store_id, source_id, source_variant_id, pc, pn, pp)"
                " VALUES (%s, %s, %s, %s, %s, %s, '9.99') RETURNING id",
                (mapping_id, shop, f"9007199254740{n}", f"4007199254740{n}", f"PC{n}", f"Product {n}"),
            ).fetchone()
        )

    queue = (
        "INSERT INTO sync_queue (store_mapping_id, store_code, product_id, operation, state, attempts, last_error,"
        " enqueued_at, finished_at) VALUES (%s, %s, %s, 'upsert', %s, %s, %s, %s, %s) RETURNING id"
    )
    for i, secs in enumerate((0.03, 0.2, 0.4, 1.5, 7)):
        enq = ago(minutes=30 + i)
        item = _id(conn.execute(queue, (m1, "S1", product(m1, "alpha.myshopify.com", f"1{i}"), "succeeded", 1,
                                        None, enq, enq + timedelta(seconds=secs))).fetchone())  # fmt: skip
        conn.execute(
            "INSERT INTO sync_log (queue_item_id, store_code, status, attempt, enqueued_at, acked_at, latency_ms,"
            " created_at) VALUES (%s, 'S1', 'succeeded', 1, %s, %s, %s, %s)",
            (item, enq, enq + timedelta(seconds=secs), secs * 1000, enq + timedelta(seconds=secs)),
        )
    dead = (m1, "S1", product(m1, "alpha.myshopify.com", "20"), "dead", 3, DEAD_ERROR, ago(hours=2), ago(hours=1))
    dead_id = _id(conn.execute(queue, dead).fetchone())
    conn.execute(queue, (m2, "S2", product(m2, "beta.myshopify.com", "30"), "pending", 0, None, ago(minutes=20), None))
    for outcome, reason in [("enqueued", None), ("enqueued", None), ("duplicate", "already received as inbox #79"),
                            ("ignored", "no active mapping"), ("invalid", "malformed JSON")]:  # fmt: skip
        conn.execute(
            "INSERT INTO webhook_inbox (shop_domain, topic, event_id, received_at, outcome, reason, raw_body)"
            " VALUES ('alpha.myshopify.com', 'products/update', gen_random_uuid()::text, %s, %s, %s, '{}'::bytea)",
            (ago(minutes=5), outcome, reason),
        )
    conn.execute(
        "INSERT INTO session_checks (session_key, pipeline, store, path, checked_at, valid, detail) VALUES"
        " ('td_a817', 'crm', 'a817', %s, %s, false, 'login page shown'),"
        " ('td_a668', 'crm', 'a668', %s, %s, true, NULL)",
        (str(profiles / "td_a817.json"), ago(hours=1), str(profiles / "td_a668.json"), ago(hours=2)),
    )
    # alpha: Shopify had dropped a subscription (re-created by the check) and a reconciliation found drift;
    # beta: never checked, never reconciled
    conn.execute(
        "INSERT INTO webhook_subscription_checks (shop_domain, checked_at, action, expected, present, missing, created)"
        " VALUES ('alpha.myshopify.com', %s, 'check', 4, 3, '{products/update}', '{products/update}')",
        (ago(hours=1),),
    )
    conn.execute(
        "INSERT INTO reconcile_runs (shop_domain, store_mapping_id, mode, started_at, finished_at, status, created,"
        " updated, deleted, unchanged) VALUES ('alpha.myshopify.com', %s, 'incremental', %s, %s, 'succeeded', 2, 1, 0,"
        " 40)",
        (m1, ago(minutes=59), ago(minutes=58)),
    )
    conn.commit()
    profiles.mkdir(parents=True, exist_ok=True)
    for key in ("td_a668", "td_a817"):
        (profiles / f"{key}.json").write_text("{}", encoding="utf-8")
    session_file.parent.mkdir(parents=True, exist_ok=True)
    session_file.write_text("{}", encoding="utf-8")
    return {"dead_id": dead_id, "mapping_ids": (m1, m2)}
