"""ingest_file on crafted files: rejects with remarks, one transaction per file, all-rejected files."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest

from storeflow.crm.ingest import ingest_file
from storeflow.crm.store import FileInfo
from storeflow.sandbox.tumbledry.common import xlsx_bytes
from storeflow.sandbox.uclean import XLSX_HEADERS

pytestmark = pytest.mark.integration


def gst_row(n: int, booking: str, when: str, total: Any) -> list[Any]:
    return [n, booking, f"INV/{n}", when, "Asha", "+91 98100 0000" + str(n), "Paid", "", "Haryana", 100, 9, 9, total]


def info() -> FileInfo:
    return FileInfo(uuid.uuid4(), "uc", "sector56", "GST", "export", date(2025, 11, 10), date(2025, 11, 11))


def test_bad_rows_go_to_rejects_with_remarks(conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    path = tmp_path / "UC_GST_Sector56Gurugram_2025-11-10_to_2025-11-11.xlsx"
    rows = [
        gst_row(1, "UC1", "10/11/2025", "1,118.00"),
        gst_row(2, "UC2", "31/31/2025", 118),  # bad date
        gst_row(3, "UC3", "11/11/2025", "abc"),  # bad amount
        gst_row(4, "UC4", "11/11/2025", 118.0),
    ]
    path.write_bytes(xlsx_bytes(XLSX_HEADERS, rows, [["", "Total", "", "", "", "", "", "", "", 400, 36, 36, 472]]))
    result = ingest_file(conn, path, info())
    assert (result.status, result.inserted, result.rejected) == ("ok", 2, 2)
    facts = conn.execute("SELECT order_number, final_amount::float AS f FROM fact_uc_gst ORDER BY 1").fetchall()
    assert [(r["order_number"], r["f"]) for r in facts] == [("UC1", 1118.0), ("UC4", 118.0)]
    rejects = conn.execute("SELECT row_number, remark, raw_data FROM crm_rejects ORDER BY row_number").fetchall()
    assert [r["row_number"] for r in rejects] == [3, 4]
    assert "Invoice Date: not a date: '31/31/2025'" in rejects[0]["remark"]
    assert "Total Invoice Value: not an amount: 'abc'" in rejects[1]["remark"]
    assert rejects[1]["raw_data"]["Booking ID"] == "UC3"
    audit = conn.execute("SELECT status, inserted_rows, rejected_rows, md5 FROM ingest_audit").fetchone()
    assert (audit["status"], audit["inserted_rows"], audit["rejected_rows"], audit["md5"]) == ("ok", 2, 2, result.md5)


def test_all_rows_rejected_fails_the_file_and_keeps_facts_empty(conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    path = tmp_path / "bad.xlsx"
    path.write_bytes(xlsx_bytes(XLSX_HEADERS, [gst_row(1, "UC1", "soon", 1)], []))
    result = ingest_file(conn, path, info())
    assert result.status == "failed" and "all 1 data rows rejected" in (result.error or "")
    assert conn.execute("SELECT count(*) AS n FROM fact_uc_gst").fetchone()["n"] == 0
    assert conn.execute("SELECT status FROM download_ledger").fetchone()["status"] == "failed"
    assert conn.execute("SELECT count(*) AS n FROM crm_rejects").fetchone()["n"] == 1


def test_text_with_backslash_tab_newline_and_blanks_reaches_facts_intact(
    conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "UC_GST_Sector56Gurugram_2025-11-10_to_2025-11-11.xlsx"
    rows = [gst_row(1, "UC1", "10/11/2025", 118), gst_row(2, "UC2", "10/11/2025", 236)]
    rows[0][4] = "C:\\shop\\till"  # customer name with backslashes
    rows[0][8] = "Har\tyana\nNCR"  # tab + newline: normalised to spaces, then escaped for COPY
    rows[1][4] = ""  # blank -> NULL
    rows[1][7] = "\\N"  # the literal text \N, not a NULL
    path.write_bytes(xlsx_bytes(XLSX_HEADERS, rows, []))
    assert ingest_file(conn, path, info()).inserted == 2
    facts = conn.execute(
        "SELECT customer_name, place_of_supply, customer_gst, raw_data FROM fact_uc_gst ORDER BY order_number"
    ).fetchall()
    assert (facts[0]["customer_name"], facts[0]["place_of_supply"]) == ("C:\\shop\\till", "Har yana NCR")
    assert facts[0]["raw_data"]["Customer Name"] == "C:\\shop\\till"
    assert (facts[1]["customer_name"], facts[1]["customer_gst"]) == (None, "\\N")


def test_a_key_twice_in_one_file_keeps_the_last_row(conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    path = tmp_path / "UC_GST_Sector56Gurugram_2025-11-10_to_2025-11-11.xlsx"
    rows = [gst_row(1, "UC1", "10/11/2025", 100), gst_row(2, "UC2", "10/11/2025", 200)]
    rows.append(gst_row(3, "UC1", "10/11/2025", 150))  # same key as the first row: the later line wins
    path.write_bytes(xlsx_bytes(XLSX_HEADERS, rows, []))
    result = ingest_file(conn, path, info())
    assert (result.status, result.inserted, result.updated, result.unchanged) == ("ok", 2, 0, 0)
    facts = conn.execute("SELECT order_number, final_amount::float AS f FROM fact_uc_gst ORDER BY 1").fetchall()
    assert [(r["order_number"], r["f"]) for r in facts] == [("UC1", 150.0), ("UC2", 200.0)]


def test_migration_turns_last_activity_into_a_timestamp_and_old_words_into_remarks(
    conn: psycopg.Connection[Any],
) -> None:
    from datetime import datetime

    from storeflow.db.migrate import load_migrations

    for table in ("stg_td_order_report", "fact_td_orders"):  # the column as 0200 created it
        conn.execute(f"ALTER TABLE {table} ALTER COLUMN last_activity TYPE text")
    old = [
        ("1", "12 Nov 2025 06:10 PM", None),
        ("2", "12/11/2025 18:10", None),
        ("3", "Sent to Workshop", "Phone: not a phone number: '12345'"),
        ("4", "", None),
        ("5", None, None),
        ("6", "today", None),
    ]
    for number, activity, remarks in old:
        conn.execute(
            "INSERT INTO fact_td_orders (run_id, ledger_id, store_code, order_number, order_date, last_activity, "
            "remarks, raw_data) VALUES (%s, 1, 'a668', %s, '2025-11-12', %s, %s, '{}')",
            (uuid.uuid4(), number, activity, remarks),
        )
    (migration,) = [m for m in load_migrations() if m.version == 203]
    conn.execute(migration.sql)
    rows = conn.execute("SELECT last_activity, remarks FROM fact_td_orders ORDER BY order_number").fetchall()
    assert [(r["last_activity"], r["remarks"]) for r in rows] == [
        (datetime(2025, 11, 12, 18, 10), None),
        (datetime(2025, 11, 12, 18, 10), None),
        (None, "Phone: not a phone number: '12345'; Last Activity: not a date: 'Sent to Workshop'"),
        (None, None),
        (None, None),
        (None, "Last Activity: not a date: 'today'"),
    ]
    kind = "SELECT data_type FROM information_schema.columns WHERE table_name = %s AND column_name = 'last_activity'"
    for table in ("stg_td_order_report", "fact_td_orders"):
        assert conn.execute(kind, (table,)).fetchone()["data_type"] == "timestamp without time zone"


def _many(n: int, repeat_first_at: int | None = None) -> list[list[Any]]:
    rows = [gst_row(i, f"UC{i}", "10/11/2025", 100 + i) for i in range(1, n + 1)]
    if repeat_first_at is not None:  # the key of row 1 again, later: the later line wins
        rows[repeat_first_at] = gst_row(repeat_first_at + 1, "UC1", "10/11/2025", 999)
    return rows


@pytest.mark.parametrize("repeat_first_at", [None, 9])
def test_a_file_of_many_chunks_loads_like_one(
    conn: psycopg.Connection[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, repeat_first_at: int | None
) -> None:
    from storeflow.crm import ingest

    monkeypatch.setattr(ingest, "COPY_CHUNK_ROWS", 3)  # 11 rows: 4 chunks, the repeated key in the 4th
    path = tmp_path / "UC_GST_Sector56Gurugram_2025-11-10_to_2025-11-11.xlsx"
    rows = _many(11, repeat_first_at)
    rows[4][3] = "31/31/2025"  # one reject in the second chunk
    path.write_bytes(xlsx_bytes(XLSX_HEADERS, rows, [["", "Total", *[""] * 11]]))
    first = ingest_file(conn, path, info())
    keys = 10 if repeat_first_at is None else 9
    assert (first.status, first.inserted, first.updated, first.unchanged, first.rejected) == ("ok", keys, 0, 0, 1)
    facts = conn.execute("SELECT order_number, final_amount::float AS f FROM fact_uc_gst").fetchall()
    amounts = {r["order_number"]: r["f"] for r in facts}
    assert len(amounts) == keys and "UC5" not in amounts
    assert amounts["UC1"] == (101.0 if repeat_first_at is None else 999.0)
    staged = conn.execute("SELECT count(*) AS n FROM stg_uc_gst_report WHERE ledger_id = %s", (first.ledger_id,))
    assert staged.fetchone()["n"] == 10
    rows[2][-1] = 500  # the same file with one amount changed: one update, the rest unchanged
    path.write_bytes(xlsx_bytes(XLSX_HEADERS, rows, []))
    again = ingest_file(conn, path, info())
    assert (again.status, again.inserted, again.updated, again.unchanged) == ("ok", 0, 1, keys - 1)


def test_a_database_error_in_a_later_chunk_leaves_no_partial_data(
    conn: psycopg.Connection[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from storeflow.crm import ingest

    monkeypatch.setattr(ingest, "COPY_CHUNK_ROWS", 2)
    from storeflow.crm.reports import UC_API_COLUMNS

    base = dict.fromkeys((c.header for c in UC_API_COLUMNS), "")
    amounts = {"taxable_value": 90, "cgst": 5, "sgst": 5, "total_tax": 10, "final_amount": 100}
    items = [
        {**base, **amounts, "order_number": f"UC{i}", "invoice_date": "2025-11-10 10:00:00", "name": "Asha"}
        for i in range(1, 8)
    ]
    items[5]["name"] = "As\x00ha"  # PostgreSQL refuses a NUL in text: the 3rd chunk's COPY fails
    path = tmp_path / "UC_GST_sector56_2025-11-10_to_2025-11-11.json"
    path.write_text(json.dumps(items), encoding="utf-8")
    result = ingest_file(conn, path, info())
    assert result.status == "failed" and "database error" in (result.error or "")
    assert "0x00" in (result.error or ""), result.error
    assert conn.execute("SELECT count(*) AS n FROM fact_uc_gst").fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM stg_uc_gst_report").fetchone()["n"] == 0
    audit = conn.execute("SELECT status, error, file_name FROM ingest_audit").fetchall()
    assert [(a["status"], a["file_name"]) for a in audit] == [("failed", path.name)]


def test_a_conversion_error_in_a_later_chunk_ends_the_copy_and_rolls_back(
    conn: psycopg.Connection[Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from storeflow.crm import ingest

    monkeypatch.setattr(ingest, "COPY_CHUNK_ROWS", 2)
    real, calls = ingest.copy_text, []

    def copy_text(*args: Any) -> str:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("converter bug")
        return real(*args)

    monkeypatch.setattr(ingest, "copy_text", copy_text)
    path = tmp_path / "UC_GST_Sector56Gurugram_2025-11-10_to_2025-11-11.xlsx"
    path.write_bytes(xlsx_bytes(XLSX_HEADERS, _many(7), []))
    with pytest.raises(RuntimeError, match="converter bug"):
        ingest_file(conn, path, info())
    conn.rollback()
    assert conn.execute("SELECT count(*) AS n FROM fact_uc_gst").fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM download_ledger").fetchone()["n"] == 0
