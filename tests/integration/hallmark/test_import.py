"""`storeflow hallmark import` and `stores load` against a real PostgreSQL (no portal needed)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from storeflow.db.connect import Database
from storeflow.hallmark.importer import import_directory, import_files
from tests.integration.hallmark.conftest import run_cli

pytestmark = pytest.mark.integration


def _order(order_id: str, customer: str, lines: int, total: str = "$1,234.56 ") -> dict[str, Any]:
    return {
        "order_id": order_id,
        "customer_id": int(customer),
        "store_name": "RESTON #9",
        "order_creation_date": "09/01/2025",
        "actual_delivery_date": "",
        "order_total": total,
        "order_status": "COMPLETED",
        "delivery_id": "8001, 8002",
        "billing_document_number": "5001",
        "order_lines": [
            {"line_item_number": n, "material_number": f"0000{n}", "quantity": 2, "wholesales": "10.50 "}
            for n in range(1, lines + 1)
        ],
    }


def _write(folder: Path, name: str, data: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_broken_file_is_named_and_skipped_while_the_others_import(
    make_settings: Any, db_url: str, tmp_path: Path, conn: Any
) -> None:
    make_settings(db_url=db_url)
    data = tmp_path / "data" / "2025" / "09" / "store_9"
    _write(data, "order_3000000001.json", _order("3000000001", "1000055874", 3))
    _write(data, "order_3000000002.json", _order("3000000002", "1000055874", 2, total="127.82"))
    broken = _write(data, "order_3000000003.json", '{"order_id": "3000000003", "order_lines": [')
    bad_money = _write(data, "order_3000000004.json", _order("3000000004", "1000055874", 1, total="12,3x"))
    bad_line = _order("3000000005", "1000055874", 2)
    bad_line["order_lines"][1]["wholesales"] = "ten dollars"
    bad_line_path = _write(data, "order_3000000005.json", bad_line)
    result = run_cli(["hallmark", "import", "--data-dir", str(tmp_path / "data")], tmp_path)
    assert result.returncode == 1
    assert str(broken) in result.stderr and str(bad_money) in result.stderr
    assert str(bad_line_path) in result.stderr and "ten dollars" in result.stderr
    assert "imported 2 file(s)" in result.stdout
    rows = conn.execute("SELECT order_id, order_total, order_creation_date FROM orders ORDER BY 1").fetchall()
    assert [(r["order_id"], r["order_total"], r["order_creation_date"]) for r in rows] == [
        ("3000000001", Decimal("1234.56"), date(2025, 9, 1)),
        ("3000000002", Decimal("127.82"), date(2025, 9, 1)),
    ]
    assert conn.execute("SELECT count(*) n FROM order_items").fetchone()["n"] == 5
    links = conn.execute("SELECT count(*) n FROM order_deliveries WHERE order_id = '3000000001'").fetchone()
    assert links["n"] == 2


def test_reimport_upserts_header_and_replaces_children(make_settings: Any, database: Database, conn: Any) -> None:
    settings = make_settings()
    folder = settings.OUTPUT_DIRECTORY / "2025" / "09" / "store_9"
    _write(folder, "order_3000000009.json", _order("3000000009", "1000055874", 4))
    first = import_directory(database, settings.OUTPUT_DIRECTORY)
    _write(folder, "order_3000000009.json", _order("3000000009", "1000055874", 2, total="21.00"))
    second = import_directory(database, settings.OUTPUT_DIRECTORY)
    assert (first.orders, second.orders) == (1, 1)
    row = conn.execute("SELECT order_total, line_count, raw_data FROM orders").fetchone()
    assert (row["order_total"], row["line_count"], len(row["raw_data"]["order_lines"])) == (Decimal("21.00"), 2, 2)
    assert conn.execute("SELECT count(*) n FROM order_items").fetchone()["n"] == 2


def test_stores_load_from_csv_and_toml_gives_canonical_names(
    make_settings: Any, db_url: str, tmp_path: Path, conn: Any
) -> None:
    make_settings(db_url=db_url)
    csv_path = tmp_path / "stores.csv"
    csv_path.write_text("\ufeffCustomer #,Store #,Store Name\n1000055874,9,Reston\n1000004735,1403,Fairfax\n")
    toml_path = tmp_path / "stores.toml"
    toml_path.write_text(
        '[hallmark]\ndefault_customer_ids = ["1000077777"]\n'
        '[[hallmark.stores]]\ncustomer_id = "1000077777"\nstore_number = "12"\nstore_name = "Vienna"\n'
    )
    loaded = run_cli(["hallmark", "stores", "load", str(csv_path)], tmp_path)
    assert loaded.returncode == 0, loaded.stderr
    assert "2 store(s)" in loaded.stdout
    from_config = run_cli(["--config", str(toml_path), "hallmark", "stores", "load"], tmp_path)
    assert from_config.returncode == 0 and "1 store(s)" in from_config.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("customer,name\n1,x\n")
    refused = run_cli(["hallmark", "stores", "load", str(bad)], tmp_path)
    assert refused.returncode == 2 and "store_number" in refused.stderr

    _write(tmp_path / "data" / "2025" / "09" / "x", "order_3000000010.json", _order("3000000010", "1000055874", 1))
    imported = run_cli(["hallmark", "import", "--data-dir", str(tmp_path / "data")], tmp_path)
    assert imported.returncode == 0, imported.stderr
    stores = conn.execute("SELECT customer_id, store_number, store_name FROM stores ORDER BY 1").fetchall()
    assert [tuple(r.values()) for r in stores] == [
        ("1000004735", "1403", "Fairfax"),
        ("1000055874", "9", "Reston"),
        ("1000077777", "12", "Vienna"),
    ]
    order = conn.execute("SELECT customer_id, store_number, store_name, portal_store_name FROM orders").fetchone()
    assert tuple(order.values()) == ("1000055874", "9", "Reston", "RESTON #9")


def test_retails_per_wholesale_is_a_count_from_integer_or_decimal_text(
    make_settings: Any, database: Database, conn: Any
) -> None:
    settings = make_settings()
    folder = settings.OUTPUT_DIRECTORY / "2025" / "09" / "store_9"
    order = _order("3000000020", "1000055874", 3)
    for line, text in zip(order["order_lines"], ["12", "24.000", " 6 "], strict=True):
        line["retailsin1_wholesale"] = text
    _write(folder, "order_3000000020.json", order)
    fraction = _order("3000000021", "1000055874", 1)
    fraction["order_lines"][0]["retailsin1_wholesale"] = "23.98"
    bad = _write(folder, "order_3000000021.json", fraction)
    summary = import_directory(database, settings.OUTPUT_DIRECTORY)
    assert summary.orders == 1
    assert [(path, reason) for path, reason in summary.failed] == [
        (bad, "BadRecordError: retailsin1_wholesale: not a whole count: '23.98'")
    ]
    rows = conn.execute(
        "SELECT retailsin1_wholesale AS n, pg_typeof(retailsin1_wholesale)::text AS t "
        "FROM order_items ORDER BY line_index"
    ).fetchall()
    assert [(r["n"], r["t"]) for r in rows] == [(12, "integer"), (24, "integer"), (6, "integer")]


def test_migration_keeps_whole_counts_and_clears_money_written_there(conn: Any) -> None:
    from storeflow.db.migrate import load_migrations

    conn.execute("ALTER TABLE order_items ALTER COLUMN retailsin1_wholesale TYPE numeric(14, 2)")  # as in 0100
    conn.execute("INSERT INTO orders (order_id, raw_data) VALUES ('1', '{}')")
    conn.execute(
        "INSERT INTO order_items (order_id, line_index, retailsin1_wholesale, raw_data) "
        "VALUES ('1', 1, 12.00, '{}'), ('1', 2, 23.98, '{\"retailsin1_wholesale\": \"23.98\"}'), ('1', 3, NULL, '{}')"
    )
    (migration,) = [m for m in load_migrations() if m.version == 101]
    conn.execute(migration.sql)
    rows = conn.execute("SELECT retailsin1_wholesale AS n, raw_data FROM order_items ORDER BY line_index").fetchall()
    assert [r["n"] for r in rows] == [12, None, None]
    assert rows[1]["raw_data"] == {"retailsin1_wholesale": "23.98"}


def test_import_files_imports_exactly_the_files_given(make_settings: Any, database: Database, conn: Any) -> None:
    settings = make_settings()
    folder = settings.OUTPUT_DIRECTORY / "2025" / "09" / "store_9"
    given = _write(folder, "order_3000000011.json", _order("3000000011", "1000055874", 2))
    _write(folder, "order_3000000012.json", _order("3000000012", "1000055874", 1))  # same folder, not given
    missing = folder / "order_3000000013.json"
    summary = import_files(database, [given, given, missing])
    assert (summary.files, summary.orders, summary.order_lines) == (1, 1, 2)
    assert [path for path, _error in summary.failed] == [missing]
    assert "FileNotFoundError" in summary.failed[0][1]
    rows = conn.execute("SELECT order_id FROM orders ORDER BY 1").fetchall()
    assert [r["order_id"] for r in rows] == ["3000000011"]
