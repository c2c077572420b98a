"""Extraction against the simulator with a saved session (one Chromium login for the module)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from storeflow.db.connect import Database
from storeflow.errors import RateLimitStop
from storeflow.hallmark.importer import import_directory
from storeflow.hallmark.store import upsert_stores
from tests.integration.hallmark.conftest import Portal, extract, run_cli

pytestmark = pytest.mark.integration


def _orders(portal: Portal, count: int, skip: int = 0) -> list[str]:
    return sorted(o for o, v in portal.sim.orders.items() if v.created is not None)[skip : skip + count]


def test_bulk_range_files_and_imported_totals_equal_the_truth(
    portal: Portal, hm_settings: Any, with_session: Any, database: Database, conn: Any
) -> None:
    settings = hm_settings()
    with_session(settings)
    with database.transaction() as c:
        upsert_stores(c, settings.config.hallmark.stores)
    summary = extract(settings, database, kind="bulk-orders", start=date(2025, 2, 3), end=date(2025, 2, 16))
    truth = portal.truth("all", "2025-02-03", "2025-02-16")
    files = sorted(settings.OUTPUT_DIRECTORY.rglob("order_*.json"))
    assert summary.status == "ok" and summary.logins == 0 and summary.reused_session
    assert (summary.found, summary.downloaded, summary.failed) == (truth["orders"], truth["orders"], 0)
    assert len(files) == truth["orders"]
    assert all(f.parent.parent.parent.name == "2025" and f.parent.parent.name == "02" for f in files)
    known_numbers = {s.store_number for s in settings.config.hallmark.stores}
    assert {f.parent.name.removeprefix("store_") for f in files} <= known_numbers

    result = import_directory(database, settings.OUTPUT_DIRECTORY)
    assert result.failed == [] and result.orders == truth["orders"]
    row = conn.execute("SELECT count(*) n, sum(order_total) total FROM orders").fetchone()
    lines = conn.execute("SELECT count(*) n FROM order_items").fetchone()["n"]
    assert (row["n"], lines, row["total"]) == (truth["orders"], truth["order_lines"], Decimal(truth["order_total"]))
    canonical = conn.execute(
        "SELECT count(*) n FROM orders o JOIN stores s USING (customer_id) "
        "WHERE o.store_name = s.store_name AND o.store_number = s.store_number"
    ).fetchone()["n"]
    assert canonical == truth["orders"]
    run = conn.execute("SELECT status, downloaded, failed FROM hallmark_runs").fetchone()
    assert (run["status"], run["downloaded"], run["failed"]) == ("ok", truth["orders"], 0)
    audit = conn.execute("SELECT command, status, summary FROM pipeline_runs WHERE pipeline = 'hallmark'").fetchone()
    assert (audit["command"], audit["status"], audit["summary"]["downloaded"]) == ("bulk-orders", "ok", truth["orders"])
    # at least one search page plus one detail call per order
    assert audit["summary"]["portal_requests"] > truth["orders"]


def test_skip_existing_then_update_redownloads(
    portal: Portal, hm_settings: Any, with_session: Any, database: Database, tmp_path: Path
) -> None:
    settings = hm_settings()
    with_session(settings)
    ids = _orders(portal, 3)
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    first = extract(settings, database, kind="orders", ids=ids)
    before = portal.state()["by_action"].get("Portal_OrderDetailController.getOrderDetailSAPSearchResult", 0)
    second = extract(settings, database, kind="orders", ids=ids)
    after = portal.state()["by_action"].get("Portal_OrderDetailController.getOrderDetailSAPSearchResult", 0)
    third = extract(settings, database, kind="orders", ids=ids, update=True)
    assert (first.downloaded, first.skipped) == (3, 0)
    assert (second.downloaded, second.skipped, after - before) == (0, 3, 0)
    assert (third.downloaded, third.skipped) == (3, 0)
    assert len(list(settings.OUTPUT_DIRECTORY.rglob("order_*.json"))) == 3


def test_client_out_of_sync_rereads_fwuid_and_retries_once(
    portal: Portal, hm_settings: Any, with_session: Any, database: Database
) -> None:
    settings = hm_settings()
    with_session(settings)
    old = portal.state()["fwuid"]
    portal.tune(rotate_fwuid_after=1)
    summary = extract(settings, database, kind="orders", ids=_orders(portal, 4, skip=10))
    state = portal.state()
    assert summary.status == "ok" and summary.downloaded == 4
    assert state["fwuid"] != old and state["out_of_sync"] >= 1


def test_429_waits_for_retry_after_then_continues(
    portal: Portal, hm_settings: Any, with_session: Any, database: Database
) -> None:
    settings = hm_settings()
    with_session(settings)
    portal.fault(status=429, retry_after=1, count=1, path="/s/sfsites/aura")
    summary = extract(settings, database, kind="orders", ids=_orders(portal, 3, skip=20))
    assert (summary.status, summary.downloaded, summary.rate_limited) == ("ok", 3, 1)


def test_rate_limit_stop_then_resume_without_searching_again(
    portal: Portal, hm_settings: Any, with_session: Any, database: Database, conn: Any
) -> None:
    settings = hm_settings()
    with_session(settings)
    customers = [s.customer_id for s in settings.config.hallmark.stores[:3]]
    portal.tune(rate_limit_interval=30, rate_limit_burst=1, retry_after=600)  # 2nd call: 429 + 600 s
    with pytest.raises(RateLimitStop, match="--resume"):
        extract(
            settings,
            database,
            kind="bulk-orders",
            start=date(2025, 3, 1),
            end=date(2025, 4, 30),
            customer_ids=customers,
        )
    run = conn.execute("SELECT run_id, status, search_complete, last_error FROM hallmark_runs").fetchone()
    pending = conn.execute("SELECT count(*) n FROM hallmark_run_items WHERE status = 'pending'").fetchone()["n"]
    truth = portal.truth(",".join(customers), "2025-03-01", "2025-04-30")
    assert (run["status"], run["search_complete"]) == ("stopped", True) and "cap" in run["last_error"]
    assert pending == truth["orders"] > 0

    portal.reset()
    searches = portal.state()["by_action"]["Portal_OrderController.getOrderSAPSearchResult"]
    resumed = extract(settings, database, kind=None, resume=True)
    conn.commit()
    assert (resumed.run_id, resumed.status, resumed.downloaded) == (run["run_id"], "ok", truth["orders"])
    assert portal.state()["by_action"]["Portal_OrderController.getOrderSAPSearchResult"] == searches
    assert len(list(settings.OUTPUT_DIRECTORY.rglob("order_*.json"))) == truth["orders"]


def test_consecutive_failures_stop_the_run_with_exit_5(
    portal: Portal, hm_settings: Any, with_session: Any, conn: Any, tmp_path: Path
) -> None:
    settings = hm_settings()
    with_session(settings)
    (tmp_path / "ids.txt").write_text("1\n2\n3\n")
    args = ["--config", str(portal.config), "hallmark", "--orders", "ids.txt", "--max-consecutive-failures", "2"]
    done = run_cli(args, tmp_path)
    assert done.returncode == 5, done.stderr
    assert "2 consecutive failures" in done.stderr and "--resume" in done.stderr
    rows = conn.execute("SELECT status, count(*) n FROM hallmark_run_items GROUP BY status ORDER BY 1").fetchall()
    assert [(r["status"], r["n"]) for r in rows] == [("failed", 2), ("pending", 1)]
    assert conn.execute("SELECT status FROM hallmark_runs").fetchone()["status"] == "stopped"


def test_ctrl_c_leaves_a_resumable_run(
    portal: Portal, hm_settings: Any, with_session: Any, conn: Any, tmp_path: Path
) -> None:
    settings = hm_settings(RATE_LIMIT_DETAIL_SECONDS="0.4")
    with_session(settings)
    ids = _orders(portal, 8, skip=60)
    (tmp_path / "ids.txt").write_text("\n".join(ids))
    # a test run started in the background by a shell without job control ignores SIGINT, and a child
    # inherits an ignored signal (Python then installs no KeyboardInterrupt): give the child the default
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "storeflow", "--config", str(portal.config), "hallmark", "--orders", "ids.txt"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(settings.OUTPUT_DIRECTORY.rglob("order_*.json")):
        time.sleep(0.1)
    assert proc.poll() is None, f"the run ended (exit {proc.returncode}) before the test saw its first file"
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "--resume" in err
    run = conn.execute("SELECT status FROM hallmark_runs").fetchone()
    conn.commit()
    assert run["status"] == "stopped"
    resumed = run_cli(
        ["--config", str(portal.config), "hallmark", "--resume"], tmp_path, {"RATE_LIMIT_DETAIL_SECONDS": "0.05"}
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "(resumed)" in resumed.stdout
    assert {p.name for p in settings.OUTPUT_DIRECTORY.rglob("order_*.json")} == {f"order_{i}.json" for i in ids}


def test_csv_exports_with_bom_billing_and_deliveries_import(
    portal: Portal, hm_settings: Any, with_session: Any, database: Database, conn: Any, tmp_path: Path
) -> None:
    settings = hm_settings()
    with_session(settings)
    order_ids = _orders(portal, 2, skip=30)
    bill_ids = sorted(portal.sim.billings)[:3]
    orders_csv = tmp_path / "orders.csv"
    orders_csv.write_text(
        "\ufeffStore Name,Order #,Order Creation Date,Season Description,Order Status,PO #,Source System ID,"
        "Order Total,Requested Delivery Date,Actual Ship Date\n"
        + "".join(f'RESTON,{o},01/02/2025,Everyday,COMPLETED,PO1,SAP1,"$1,234.56",01/09/2025,\n' for o in order_ids),
        encoding="utf-8",
    )
    bills_csv = tmp_path / "bills.csv"
    bills_csv.write_text(
        "\ufeffStore Name,Customer #,Billing Document #,Billing Document Date,PO #,Season Description,"
        "Billing Document Type,Billing Document Status,Total,Delivery #\n"
        + "".join(f'RESTON,1,{b},01/05/2025,PO1,Everyday,Invoice,Paid,"$10.00",8\n' for b in bill_ids),
        encoding="utf-8",
    )
    from storeflow.hallmark.inputs import read_csv_column

    ids = read_csv_column(orders_csv, "Order #")
    assert ids == order_ids
    orders = extract(settings, database, kind="orders", ids=ids, with_deliveries=True)
    bills = extract(settings, database, kind="billing", ids=read_csv_column(bills_csv, "Billing Document #"))
    assert (orders.downloaded, bills.downloaded) == (2, 3)
    record = json.loads(next(settings.OUTPUT_DIRECTORY.rglob(f"order_{order_ids[0]}.json")).read_text())
    assert record["deliveries"] and record["deliveries"][0]["carrier"]
    result = import_directory(database, settings.OUTPUT_DIRECTORY)
    assert (result.orders, result.billing_documents, result.failed) == (2, 3, [])
    expected_lines = sum(len(portal.sim.billings[b].lines) for b in bill_ids)
    assert conn.execute("SELECT count(*) n FROM billing_document_items").fetchone()["n"] == expected_lines
    delivery = conn.execute("SELECT raw_data FROM order_deliveries WHERE order_id = %s", (order_ids[0],)).fetchone()
    assert delivery["raw_data"]["carrier"] in ("UPS", "FedEx", "Hallmark Fleet")
    totals = conn.execute("SELECT billing_document_id, total FROM billing_documents").fetchall()
    for row in totals:
        assert row["total"] == Decimal(portal.sim.billings[row["billing_document_id"]].header["total"].strip())


def test_bulk_billing_documents_match_the_truth(
    portal: Portal, hm_settings: Any, with_session: Any, database: Database
) -> None:
    settings = hm_settings()
    with_session(settings)
    customers = [s.customer_id for s in settings.config.hallmark.stores[5:9]]
    summary = extract(
        settings,
        database,
        kind="bulk-billing-documents",
        start=date(2025, 1, 1),
        end=date(2025, 2, 28),
        customer_ids=customers,
    )
    truth = portal.truth(",".join(customers), "2025-01-01", "2025-02-28")
    assert (summary.status, summary.downloaded) == ("ok", truth["billing_documents"])
    assert len(list(settings.OUTPUT_DIRECTORY.rglob("billing_*.json"))) == truth["billing_documents"]


def test_cli_bare_form_search_only_and_selector_conflict(
    portal: Portal, hm_settings: Any, with_session: Any, tmp_path: Path
) -> None:
    settings = hm_settings()
    with_session(settings)
    order_id = _orders(portal, 1, skip=40)[0]
    config = str(portal.config)
    done = run_cli(["--config", config, "hallmark", "--order-id", order_id], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "downloaded" in done.stdout and len(list(settings.OUTPUT_DIRECTORY.rglob(f"order_{order_id}.json"))) == 1
    search = run_cli(
        ["--config", config, "hallmark", "extract", "--bulk-orders", "--start-date", "2025-01-01",
         "--end-date", "2025-01-10", "--search-only"],
        tmp_path,
    )  # fmt: skip
    truth = portal.truth("all", "2025-01-01", "2025-01-10")
    assert search.returncode == 0, search.stderr
    assert re.search(rf"records found\s*│\s*{truth['orders']}\s*│", search.stdout), search.stdout
    assert len(list(settings.OUTPUT_DIRECTORY.rglob("order_*.json"))) == 1
    clash = run_cli(["--config", config, "hallmark", "--order-id", "1", "--bulk-orders"], tmp_path)
    assert clash.returncode == 2 and "choose one selector" in clash.stderr


def test_order_without_a_date_goes_to_unknown_date(
    portal: Portal, hm_settings: Any, with_session: Any, database: Database
) -> None:
    settings = hm_settings()
    with_session(settings)
    undated = next(o for o, v in portal.sim.orders.items() if v.created is None)
    summary = extract(settings, database, kind="orders", ids=[undated])
    files = list(settings.OUTPUT_DIRECTORY.rglob(f"order_{undated}.json"))
    assert summary.downloaded == 1 and len(files) == 1
    assert files[0].relative_to(settings.OUTPUT_DIRECTORY).parts[0] == "unknown-date"
