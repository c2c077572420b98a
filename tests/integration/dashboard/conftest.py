"""Dashboard fixtures: pipeline data in the database, the app served on a free loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn

from storeflow.db.connect import Database
from storeflow.sandbox.host import bind_port
from storeflow.settings import Settings
from storeflow.web.app import create_app

HERE = Path(__file__).parent
NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()
PIPELINE_TABLES = (
    "download_ledger", "ingest_audit", "fact_td_orders", "fact_uc_gst", "hallmark_runs", "hallmark_run_items",
    "orders", "stores", "store_mappings", "sync_queue", "sync_log", "webhook_inbox",
)  # fmt: skip

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
def serve(settings: Settings, db_url: str, bound_host: str = "127.0.0.1") -> Iterator[str]:
    """The storeflow app in a uvicorn thread on a free 127.0.0.1 port; yields its base URL."""
    db = Database(db_url, kind="test")
    app = create_app(settings, db, bound_host=bound_host)
    sock = bind_port(0, "dashboard-test")
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the dashboard server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        db.close()


def ensure_pipeline_tables(conn: psycopg.Connection[Any]) -> None:
    conn.execute((HERE / "contract_schema.sql").read_text(encoding="utf-8").encode())
    conn.commit()


def drop_pipeline_tables(conn: psycopg.Connection[Any]) -> None:
    for table in PIPELINE_TABLES:
        conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE".encode())
    conn.commit()


def seed(conn: psycopg.Connection[Any], profiles: Path, session_file: Path) -> dict[str, Any]:
    """A realistic mix: healthy, failing and bootstrap-needing CRM stores, a stopped Hallmark run,
    an ESL store with dead letters and one with an old queue. Returns ids the tests need."""
    ensure_pipeline_tables(conn)
    ago = lambda **kw: NOW - timedelta(**kw)  # noqa: E731
    ledger = [
        ("td", "a668", "OrderReport", "TD_OrderReport_UttamNagar_a.xlsx", "m1", 20480, ago(hours=2), "downloaded"),
        ("td", "a817", "OrderReport", "TD_OrderReport_KirtiNagar_a.xlsx", "m2", 18000, ago(hours=30), "downloaded"),
        ("uc", "UC567", "GST", "UC_GST_Sector56_a.xlsx", "m3", 9000, ago(hours=3), "downloaded"),
    ]
    for crm, store, rtype, name, md5, size, at, status in ledger:
        conn.execute(
            "INSERT INTO download_ledger (crm, store, report_type, file_name, md5, size, downloaded_at, status,"
            " from_date, to_date) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (crm, store, rtype, name, md5, size, at, status, at.date() - timedelta(days=1), at.date()),
        )
    audit = [
        ("td", "a668", 120, 4, ago(hours=2), "ok", None),
        ("td", "a817", 80, 0, ago(hours=30), "ok", None),
        ("td", "a817", 0, 0, ago(hours=1), "needs_bootstrap", "session expired: login page shown"),
        ("uc", "UC567", 0, 0, ago(hours=3), "failed", "missing column: Invoice Date"),
        ("uc", "UC567", 55, 2, ago(hours=20), "ok", None),
    ]
    for crm, store, ins, upd, at, status, error in audit:
        conn.execute(
            "INSERT INTO ingest_audit (crm, store, from_date, to_date, inserted_rows, updated_rows, md5,"
            " started_at, finished_at, status, error) VALUES (%s, %s, %s, %s, %s, %s, 'x', %s, %s, %s, %s)",
            (
                crm,
                store,
                at.date() - timedelta(days=1),
                at.date(),
                ins,
                upd,
                at,
                at + timedelta(seconds=7),
                status,
                error,
            ),
        )
    for i in range(10):
        day = TODAY - timedelta(days=i)
        conn.execute(
            "INSERT INTO fact_td_orders (store_code, order_number, order_date, net_amount) VALUES (%s, %s, %s, %s)",
            ("a668", f"O{i}", day, 1000 + 37 * i),
        )
        conn.execute(
            "INSERT INTO fact_uc_gst (store_code, order_number, invoice_date, final_amount) VALUES (%s, %s, %s, %s)",
            ("UC567", f"U{i}", datetime.combine(day, datetime.min.time()), 400 + 11 * i),
        )
    conn.execute(
        "INSERT INTO hallmark_runs (run_id, kind, params, started_at, finished_at, status, downloaded, skipped, failed,"
        " last_error) VALUES (gen_random_uuid(), 'bulk-orders', '{}', %s, %s, 'ok', 40, 2, 0, NULL),"
        " (gen_random_uuid(), 'bulk-orders', '{}', %s, %s, 'stopped', 12, 0, 3, %s)",
        (ago(hours=26), ago(hours=25), ago(hours=1), ago(minutes=50), "rate limit: Retry-After 600 s over the cap"),
    )
    conn.execute("INSERT INTO stores VALUES ('101', 'C1', 'Hallmark Store 101'), ('102', 'C1', 'Hallmark Store 102')")
    for i in range(6):
        conn.execute(
            "INSERT INTO orders VALUES (%s, 'C1', %s, 'x', %s, %s)",
            (f"H{i}", "101" if i % 2 else "102", date(2026, 10 + i % 2, 5), 100 + i),
        )
    mapping = "INSERT INTO store_mappings (source_store_id, hipoink_store_code) VALUES (%s, %s) RETURNING id"
    s1 = conn.execute(mapping, ("alpha.myshopify.com", "S1")).fetchone()
    s2 = conn.execute(mapping, ("beta.myshopify.com", "S2")).fetchone()
    assert s1 and s2
    m1, m2 = (s1["id"] if isinstance(s1, dict) else s1[0]), (s2["id"] if isinstance(s2, dict) else s2[0])
    for i, secs in enumerate((0.03, 0.2, 0.4, 1.5, 7)):
        conn.execute(
            "INSERT INTO sync_queue (store_mapping_id, product_id, status, attempts, created_at, updated_at)"
            " VALUES (%s, %s, 'succeeded', 1, %s, %s)",
            (m1, f"P{i}", ago(minutes=30 + i), ago(minutes=30 + i) + timedelta(seconds=secs)),
        )
    dead = conn.execute(
        "INSERT INTO sync_queue (store_mapping_id, product_id, status, attempts, last_error, created_at, updated_at)"
        " VALUES (%s, 'P-dead', 'dead', 3, 'error_code 7: pc is required', %s, %s) RETURNING id",
        (m1, ago(hours=2), ago(hours=1)),
    ).fetchone()
    conn.execute(
        "INSERT INTO sync_queue (store_mapping_id, product_id, status, created_at, updated_at)"
        " VALUES (%s, 'P-wait', 'pending', %s, %s)",
        (m2, ago(minutes=20), ago(minutes=20)),
    )
    for outcome, reason in [("enqueued", None), ("enqueued", None), ("duplicate", "same event id"),
                            ("ignored", "no active mapping"), ("invalid", "malformed JSON")]:  # fmt: skip
        conn.execute(
            "INSERT INTO webhook_inbox (shop_domain, topic, event_id, received_at, outcome, reason)"
            " VALUES ('alpha.myshopify.com', 'products/update', gen_random_uuid()::text, %s, %s, %s)",
            (ago(minutes=5), outcome, reason),
        )
    conn.execute(
        "INSERT INTO session_checks (session_key, pipeline, store, path, checked_at, valid, detail) VALUES"
        " ('td_a817', 'crm', 'a817', %s, %s, false, 'login page shown'),"
        " ('td_a668', 'crm', 'a668', %s, %s, true, NULL)",
        (str(profiles / "td_a817.json"), ago(hours=1), str(profiles / "td_a668.json"), ago(hours=2)),
    )
    conn.commit()
    profiles.mkdir(parents=True, exist_ok=True)
    for key in ("td_a668", "td_a817"):
        (profiles / f"{key}.json").write_text("{}", encoding="utf-8")
    session_file.parent.mkdir(parents=True, exist_ok=True)
    session_file.write_text("{}", encoding="utf-8")
    dead_id = dead["id"] if isinstance(dead, dict) else dead[0]  # type: ignore[index]
    return {"dead_id": dead_id, "mapping_ids": (m1, m2)}
