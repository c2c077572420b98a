"""`storeflow hallmark import`: the JSON tree into PostgreSQL.

One file = one transaction: the header is upserted, its children (lines,
delivery and billing links) are replaced, all rows carry ``raw_data``. Money is
parsed to Decimal, dates from ``MM/DD/YYYY``; store number and name come from
the `stores` table when the customer id is known there. A file that cannot be
read or imported is reported by name and skipped; the others still import.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import Connection
from psycopg.pq import TransactionStatus

from storeflow.db.connect import Database
from storeflow.hallmark.records import (
    normalise_id,
    parse_count,
    parse_date,
    parse_file_name,
    parse_money,
    split_ids,
)
from storeflow.logs import get_logger

log = get_logger("storage")

# One statement per file (an implicit transaction): header upsert, children upserted by key and the
# children the file no longer has deleted. The upserted and the deleted child rows are disjoint, which
# is what makes a single statement with several data-modifying CTEs well defined.
IMPORT_ORDER = """
WITH doc AS (SELECT %(raw)s::jsonb AS raw), header AS (
    INSERT INTO orders (order_id, customer_id, store_number, store_name, portal_store_name, ship_to_location,
        season_description, po_number, order_reason, order_source, planogram_description, order_status,
        order_total, order_creation_date, actual_delivery_date, requested_delivery_date, comment_description,
        source_system_id, line_count, source_file, raw_data, imported_at)
    VALUES (%(id)s, %(customer_id)s, %(store_number)s, %(store_name)s, %(portal_store_name)s,
        %(ship_to_location)s, %(season_description)s, %(po_number)s, %(order_reason)s, %(order_source)s,
        %(planogram_description)s, %(order_status)s, %(order_total)s, %(order_creation_date)s,
        %(actual_delivery_date)s, %(requested_delivery_date)s, %(comment_description)s, %(source_system_id)s,
        %(line_count)s, %(source_file)s, (SELECT raw FROM doc), now())
    ON CONFLICT (order_id) DO UPDATE SET
        customer_id = EXCLUDED.customer_id, store_number = EXCLUDED.store_number, store_name = EXCLUDED.store_name,
        portal_store_name = EXCLUDED.portal_store_name, ship_to_location = EXCLUDED.ship_to_location,
        season_description = EXCLUDED.season_description, po_number = EXCLUDED.po_number,
        order_reason = EXCLUDED.order_reason, order_source = EXCLUDED.order_source,
        planogram_description = EXCLUDED.planogram_description, order_status = EXCLUDED.order_status,
        order_total = EXCLUDED.order_total, order_creation_date = EXCLUDED.order_creation_date,
        actual_delivery_date = EXCLUDED.actual_delivery_date,
        requested_delivery_date = EXCLUDED.requested_delivery_date,
        comment_description = EXCLUDED.comment_description, source_system_id = EXCLUDED.source_system_id,
        line_count = EXCLUDED.line_count, source_file = EXCLUDED.source_file, raw_data = EXCLUDED.raw_data,
        imported_at = now()
), items AS (
    INSERT INTO order_items AS t (order_id, line_index, line_item_number, location_id, material_number,
        stock_number, upc, material_description, quantity, unit_price, wholesales, retailsin1_wholesale, raw_data)
    SELECT %(id)s, x.i, x.n, x.loc, x.mat, x.stock, x.upc, x.descr, x.qty, x.price, x.whs, x.rtl,
        doc.raw -> 'order_lines' -> (x.i - 1)
    FROM doc, jsonb_to_recordset(%(lines)s::jsonb) AS x(i int, n int, loc text, mat text, stock text, upc text,
        descr text, qty numeric, price numeric, whs numeric, rtl int)
    ON CONFLICT (order_id, line_index) DO UPDATE SET
        line_item_number = EXCLUDED.line_item_number, location_id = EXCLUDED.location_id,
        material_number = EXCLUDED.material_number, stock_number = EXCLUDED.stock_number, upc = EXCLUDED.upc,
        material_description = EXCLUDED.material_description, quantity = EXCLUDED.quantity,
        unit_price = EXCLUDED.unit_price, wholesales = EXCLUDED.wholesales,
        retailsin1_wholesale = EXCLUDED.retailsin1_wholesale, raw_data = EXCLUDED.raw_data
), old_items AS (
    DELETE FROM order_items WHERE order_id = %(id)s AND line_index > %(line_count)s
), deliveries AS (
    INSERT INTO order_deliveries (order_id, delivery_id, raw_data)
    SELECT %(id)s, d.id, d.raw FROM jsonb_to_recordset(%(deliveries)s::jsonb) AS d(id text, raw jsonb)
    ON CONFLICT (order_id, delivery_id) DO UPDATE SET raw_data = EXCLUDED.raw_data
), old_deliveries AS (
    DELETE FROM order_deliveries WHERE order_id = %(id)s AND NOT delivery_id = ANY(%(delivery_ids)s::text[])
), billing AS (
    INSERT INTO order_billing_documents (order_id, billing_document_number, raw_data)
    SELECT %(id)s, b.id, b.raw FROM jsonb_to_recordset(%(billing)s::jsonb) AS b(id text, raw jsonb)
    ON CONFLICT (order_id, billing_document_number) DO UPDATE SET raw_data = EXCLUDED.raw_data
), old_billing AS (
    DELETE FROM order_billing_documents
    WHERE order_id = %(id)s AND NOT billing_document_number = ANY(%(billing_ids)s::text[])
)
SELECT 1
"""
IMPORT_BILLING = """
WITH doc AS (SELECT %(raw)s::jsonb AS raw), header AS (
    INSERT INTO billing_documents (billing_document_id, customer_id, store_number, store_name, portal_store_name,
        billing_document_date, billing_document_type, billing_document_status, po_number, season_description,
        order_id, delivery_number, total, line_count, source_file, raw_data, imported_at)
    VALUES (%(id)s, %(customer_id)s, %(store_number)s, %(store_name)s, %(portal_store_name)s,
        %(billing_document_date)s, %(billing_document_type)s, %(billing_document_status)s, %(po_number)s,
        %(season_description)s, %(order_id)s, %(delivery_number)s, %(total)s, %(line_count)s, %(source_file)s,
        (SELECT raw FROM doc), now())
    ON CONFLICT (billing_document_id) DO UPDATE SET
        customer_id = EXCLUDED.customer_id, store_number = EXCLUDED.store_number, store_name = EXCLUDED.store_name,
        portal_store_name = EXCLUDED.portal_store_name, billing_document_date = EXCLUDED.billing_document_date,
        billing_document_type = EXCLUDED.billing_document_type,
        billing_document_status = EXCLUDED.billing_document_status, po_number = EXCLUDED.po_number,
        season_description = EXCLUDED.season_description, order_id = EXCLUDED.order_id,
        delivery_number = EXCLUDED.delivery_number, total = EXCLUDED.total, line_count = EXCLUDED.line_count,
        source_file = EXCLUDED.source_file, raw_data = EXCLUDED.raw_data, imported_at = now()
), items AS (
    INSERT INTO billing_document_items (billing_document_id, line_index, line_item_number, material_number,
        material_description, quantity, unit_price, net_amount, raw_data)
    SELECT %(id)s, x.i, x.n, x.mat, x.descr, x.qty, x.price, x.net,
        CASE jsonb_typeof(doc.raw -> 'billing_lines') WHEN 'array' THEN doc.raw -> 'billing_lines' -> (x.i - 1)
            ELSE doc.raw -> 'billing_lines' END
    FROM doc, jsonb_to_recordset(%(lines)s::jsonb) AS x(i int, n int, mat text, descr text, qty numeric,
        price numeric, net numeric)
    ON CONFLICT (billing_document_id, line_index) DO UPDATE SET
        line_item_number = EXCLUDED.line_item_number, material_number = EXCLUDED.material_number,
        material_description = EXCLUDED.material_description, quantity = EXCLUDED.quantity,
        unit_price = EXCLUDED.unit_price, net_amount = EXCLUDED.net_amount, raw_data = EXCLUDED.raw_data
), old_items AS (
    DELETE FROM billing_document_items WHERE billing_document_id = %(id)s AND line_index > %(line_count)s
)
SELECT 1
"""
STORES = "SELECT customer_id, store_number, store_name FROM stores"


class BadRecordError(ValueError):
    """A file's content does not have the shape of an order or billing document."""


@dataclass
class ImportSummary:
    files: int = 0
    orders: int = 0
    order_lines: int = 0
    billing_documents: int = 0
    billing_lines: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)


def find_files(data_dir: Path) -> list[Path]:
    """Every ``order_*.json`` and ``billing_*.json`` under ``data_dir`` (sorted)."""
    found = []
    for folder, _dirs, files in os.walk(data_dir):
        for name in files:
            if parse_file_name(name):
                found.append(Path(folder) / name)
    found.sort()
    return found


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _int(value: Any) -> int | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return int(float(text))
    except ValueError:
        raise BadRecordError(f"not a number: {value!r}") from None


def _money(record: dict[str, Any], key: str) -> Any:
    try:
        return parse_money(record.get(key))
    except ValueError as exc:
        raise BadRecordError(f"{key}: {exc}") from None


def _num(record: dict[str, Any], key: str) -> str | None:
    """An amount as an exact decimal string for the JSON payload (never a float)."""
    value = _money(record, key)
    return None if value is None else str(value)


def _count(record: dict[str, Any], key: str) -> int | None:
    try:
        return parse_count(record.get(key))
    except ValueError as exc:
        raise BadRecordError(f"{key}: {exc}") from None


def _store(record: dict[str, Any], stores: dict[str, tuple[str, str]]) -> tuple[str | None, str | None, str | None]:
    customer = _text(record.get("customer_id") or record.get("customer_number"))
    if customer is not None:
        customer = normalise_id(customer)
    portal_name = _text(record.get("store_name"))
    known = stores.get(customer or "")
    if known:
        return customer, known[0], known[1]
    return customer, customer, portal_name


Statements = list[tuple[str, Any]]


def order_statements(
    record: dict[str, Any], source: str, stores: dict[str, tuple[str, str]], raw_text: str | None = None
) -> tuple[Statements, int]:
    """The statements that upsert one order and replace its children, and its line count (no I/O)."""
    order_id = _text(record.get("order_id"))
    if order_id is None:
        raise BadRecordError("no order_id")
    order_id = normalise_id(order_id)
    lines = record.get("order_lines") or []
    if not isinstance(lines, list):
        raise BadRecordError("order_lines is not a list")
    customer, number, name = _store(record, stores)
    params: dict[str, Any] = {
        "id": order_id,
        "customer_id": customer,
        "store_number": number,
        "store_name": name,
        "portal_store_name": _text(record.get("store_name")),
        "ship_to_location": _text(record.get("ship_to_location")),
        "season_description": _text(record.get("season_description")),
        "po_number": _text(record.get("po_number")),
        "order_reason": _text(record.get("order_reason")),
        "order_source": _text(record.get("order_source")),
        "planogram_description": _text(record.get("planogram_description")),
        "order_status": _text(record.get("order_status")),
        "order_total": _money(record, "order_total"),
        "order_creation_date": parse_date(record.get("order_creation_date")),
        "actual_delivery_date": parse_date(record.get("actual_delivery_date")),
        "requested_delivery_date": parse_date(record.get("requested_delivery_date")),
        "comment_description": _text(record.get("comment_description")),
        "source_system_id": _text(record.get("source_system_id")),
        "line_count": len(lines),
        "source_file": source,
        "raw": raw_text if raw_text is not None else json.dumps(record),
    }
    rows: list[dict[str, Any]] = []
    for index, line in enumerate(lines, start=1):
        if not isinstance(line, dict):
            raise BadRecordError(f"order line {index} is not an object")
        rows.append(
            {
                "i": index,
                "n": _int(line.get("line_item_number")),
                "loc": _text(line.get("location_id")),
                "mat": _text(line.get("material_number")),
                "stock": _text(line.get("stock_number")),
                "upc": _text(line.get("upc")),
                "descr": _text(line.get("material_description")),
                "qty": _num(line, "quantity"),
                "price": _num(line, "unit_price"),
                "whs": _num(line, "wholesales"),
                "rtl": _count(line, "retailsin1_wholesale"),
            }
        )
    details = {str(d.get("delivery_id")): d for d in record.get("deliveries") or [] if isinstance(d, dict)}
    deliveries = list(dict.fromkeys(split_ids(record.get("delivery_id"))))
    billing = list(dict.fromkeys(split_ids(record.get("billing_document_number"))))
    params["lines"] = json.dumps(rows)
    params["delivery_ids"] = deliveries
    params["deliveries"] = json.dumps([{"id": d, "raw": details.get(d, {"delivery_id": d})} for d in deliveries])
    params["billing_ids"] = billing
    params["billing"] = json.dumps([{"id": b, "raw": {"billing_document_number": b}} for b in billing])
    statements: Statements = [(IMPORT_ORDER, params)]
    return statements, len(lines)


def billing_statements(
    record: dict[str, Any], source: str, stores: dict[str, tuple[str, str]], raw_text: str | None = None
) -> tuple[Statements, int]:
    """The statements that upsert one billing document and replace its lines (no I/O)."""
    billing_id = _text(record.get("billing_document_id") or record.get("billing_document_number"))
    if billing_id is None:
        raise BadRecordError("no billing_document_id")
    billing_id = normalise_id(billing_id)
    lines = record.get("billing_lines") or []
    if not isinstance(lines, list):
        lines = [lines]
    customer, number, name = _store(record, stores)
    params: dict[str, Any] = {
        "id": billing_id,
        "customer_id": customer,
        "store_number": number,
        "store_name": name,
        "portal_store_name": _text(record.get("store_name")),
        "billing_document_date": parse_date(record.get("billing_document_date")),
        "billing_document_type": _text(record.get("billing_document_type")),
        "billing_document_status": _text(record.get("billing_document_status")),
        "po_number": _text(record.get("po_number")),
        "season_description": _text(record.get("season_description")),
        "order_id": _text(record.get("order_id")),
        "delivery_number": _text(record.get("delivery_number")),
        "total": _money(record, "total"),
        "line_count": len(lines),
        "source_file": source,
        "raw": raw_text if raw_text is not None else json.dumps(record),
    }
    rows: list[dict[str, Any]] = []
    for index, line in enumerate(lines, start=1):
        if not isinstance(line, dict):
            raise BadRecordError(f"billing line {index} is not an object")
        quantity = line.get("billed_quantity", line.get("quantity"))
        rows.append(
            {
                "i": index,
                "n": _int(line.get("line_item_number")),
                "mat": _text(line.get("material_number")),
                "descr": _text(line.get("material_description")),
                "qty": _num({"q": quantity}, "q"),
                "price": _num(line, "unit_price"),
                "net": _num(line, "net_amount"),
            }
        )
    params["lines"] = json.dumps(rows)
    return [(IMPORT_BILLING, params)], len(lines)


def apply_in_one_transaction(conn: Connection[Any], statements: Statements) -> None:
    """BEGIN, the statements, COMMIT: sent as one pipeline (one round trip); ROLLBACK on any error.

    ``conn`` is in autocommit mode, so the explicit BEGIN/COMMIT delimit exactly one file.
    """
    if len(statements) == 1:  # one statement in autocommit mode is one transaction
        conn.execute(*statements[0])
        return
    try:
        with conn.pipeline():
            conn.execute("BEGIN")
            for query, params in statements:
                conn.execute(query, params)
            conn.execute("COMMIT")
    except BaseException:
        if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
            conn.execute("ROLLBACK")
        raise


def load_stores(conn: Connection[Any]) -> dict[str, tuple[str, str]]:
    rows = conn.execute(STORES).fetchall()
    return {str(row["customer_id"]): (str(row["store_number"]), str(row["store_name"])) for row in rows}


def _import_files(
    db: Database,
    files: list[Path],
    summary: ImportSummary,
    lock: threading.Lock,
    fallback: dict[str, tuple[str, str]],
) -> None:
    with db.connect(autocommit=True) as conn:
        # Durability of each commit is traded for speed here: every file stays on disk and
        # re-importing is idempotent (upsert + replace), so a crash loses nothing that a re-run cannot redo.
        conn.execute("SET synchronous_commit = off")
        stores = {**fallback, **load_stores(conn)}
        for path in files:
            kind_id = parse_file_name(path.name)
            kind = kind_id[0] if kind_id else "order"
            try:
                text = path.read_text(encoding="utf-8")
                record = json.loads(text)
                if not isinstance(record, dict):
                    raise BadRecordError("top level is not a JSON object")
                if kind == "order":
                    statements, lines = order_statements(record, str(path), stores, text)
                else:
                    statements, lines = billing_statements(record, str(path), stores, text)
                apply_in_one_transaction(conn, statements)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, BadRecordError) as exc:
                _fail(summary, lock, path, exc)
                continue
            except psycopg.Error as exc:  # a database error on one file must not stop the others
                if conn.closed:
                    raise
                _fail(summary, lock, path, exc)
                continue
            with lock:
                summary.files += 1
                if kind == "order":
                    summary.orders += 1
                    summary.order_lines += lines
                else:
                    summary.billing_documents += 1
                    summary.billing_lines += lines


def _fail(summary: ImportSummary, lock: threading.Lock, path: Path, exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    log.error("skipped %s: %s", path, message, event="import")
    with lock:
        summary.failed.append((path, message))


def import_directory(
    db: Database, data_dir: Path, workers: int = 2, fallback_stores: dict[str, tuple[str, str]] | None = None
) -> ImportSummary:
    """Import every record file under ``data_dir`` (``workers`` connections in parallel).

    Store numbers/names come from the `stores` table, else ``fallback_stores`` (the TOML mapping),
    else the customer id and the portal's store name.
    """
    fallback = fallback_stores or {}
    files = find_files(data_dir)
    summary = ImportSummary()
    lock = threading.Lock()
    workers = max(1, min(workers, len(files) // 200 + 1))
    if workers == 1:
        _import_files(db, files, summary, lock, fallback)
    else:
        errors: list[BaseException] = []

        def work(part: list[Path]) -> None:
            try:
                _import_files(db, part, summary, lock, fallback)
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(files[i::workers],)) for i in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
    summary.failed.sort()
    log.info(
        "imported %d files (%d orders, %d billing documents), %d failed",
        summary.files, summary.orders, summary.billing_documents, len(summary.failed), event="import",
    )  # fmt: skip
    return summary
