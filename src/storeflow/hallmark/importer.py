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

from psycopg import Connection
from psycopg.types.json import Jsonb

from storeflow.db.connect import Database
from storeflow.hallmark.records import normalise_id, parse_date, parse_file_name, parse_money, split_ids
from storeflow.logs import get_logger

log = get_logger("storage")

UPSERT_ORDER = """
INSERT INTO orders (order_id, customer_id, store_number, store_name, portal_store_name, ship_to_location,
    season_description, po_number, order_reason, order_source, planogram_description, order_status, order_total,
    order_creation_date, actual_delivery_date, requested_delivery_date, comment_description, source_system_id,
    line_count, source_file, raw_data, imported_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (order_id) DO UPDATE SET
    customer_id = EXCLUDED.customer_id, store_number = EXCLUDED.store_number, store_name = EXCLUDED.store_name,
    portal_store_name = EXCLUDED.portal_store_name, ship_to_location = EXCLUDED.ship_to_location,
    season_description = EXCLUDED.season_description, po_number = EXCLUDED.po_number,
    order_reason = EXCLUDED.order_reason, order_source = EXCLUDED.order_source,
    planogram_description = EXCLUDED.planogram_description, order_status = EXCLUDED.order_status,
    order_total = EXCLUDED.order_total, order_creation_date = EXCLUDED.order_creation_date,
    actual_delivery_date = EXCLUDED.actual_delivery_date, requested_delivery_date = EXCLUDED.requested_delivery_date,
    comment_description = EXCLUDED.comment_description, source_system_id = EXCLUDED.source_system_id,
    line_count = EXCLUDED.line_count, source_file = EXCLUDED.source_file, raw_data = EXCLUDED.raw_data,
    imported_at = now()
"""
CLEAR_ORDER_CHILDREN = """
WITH items AS (DELETE FROM order_items WHERE order_id = %(id)s),
     deliveries AS (DELETE FROM order_deliveries WHERE order_id = %(id)s)
DELETE FROM order_billing_documents WHERE order_id = %(id)s
"""
INSERT_ORDER_ITEMS = """
INSERT INTO order_items (order_id, line_index, line_item_number, location_id, material_number, stock_number, upc,
    material_description, quantity, unit_price, wholesales, retailsin1_wholesale, raw_data)
SELECT %s, * FROM unnest(%s::int[], %s::int[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
    %s::numeric[], %s::numeric[], %s::numeric[], %s::numeric[], %s::jsonb[])
"""
INSERT_ORDER_DELIVERIES = """
INSERT INTO order_deliveries (order_id, delivery_id, raw_data)
SELECT %s, * FROM unnest(%s::text[], %s::jsonb[]) ON CONFLICT DO NOTHING
"""
INSERT_ORDER_BILLING = """
INSERT INTO order_billing_documents (order_id, billing_document_number, raw_data)
SELECT %s, * FROM unnest(%s::text[], %s::jsonb[]) ON CONFLICT DO NOTHING
"""
UPSERT_BILLING = """
INSERT INTO billing_documents (billing_document_id, customer_id, store_number, store_name, portal_store_name,
    billing_document_date, billing_document_type, billing_document_status, po_number, season_description, order_id,
    delivery_number, total, line_count, source_file, raw_data, imported_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (billing_document_id) DO UPDATE SET
    customer_id = EXCLUDED.customer_id, store_number = EXCLUDED.store_number, store_name = EXCLUDED.store_name,
    portal_store_name = EXCLUDED.portal_store_name, billing_document_date = EXCLUDED.billing_document_date,
    billing_document_type = EXCLUDED.billing_document_type,
    billing_document_status = EXCLUDED.billing_document_status, po_number = EXCLUDED.po_number,
    season_description = EXCLUDED.season_description, order_id = EXCLUDED.order_id,
    delivery_number = EXCLUDED.delivery_number, total = EXCLUDED.total, line_count = EXCLUDED.line_count,
    source_file = EXCLUDED.source_file, raw_data = EXCLUDED.raw_data, imported_at = now()
"""
CLEAR_BILLING_ITEMS = "DELETE FROM billing_document_items WHERE billing_document_id = %s"
INSERT_BILLING_ITEMS = """
INSERT INTO billing_document_items (billing_document_id, line_index, line_item_number, material_number,
    material_description, quantity, unit_price, net_amount, raw_data)
SELECT %s, * FROM unnest(%s::int[], %s::int[], %s::text[], %s::text[], %s::numeric[], %s::numeric[],
    %s::numeric[], %s::jsonb[])
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


def _store(record: dict[str, Any], stores: dict[str, tuple[str, str]]) -> tuple[str | None, str | None, str | None]:
    customer = _text(record.get("customer_id") or record.get("customer_number"))
    if customer is not None:
        customer = normalise_id(customer)
    portal_name = _text(record.get("store_name"))
    known = stores.get(customer or "")
    if known:
        return customer, known[0], known[1]
    return customer, customer, portal_name


def import_order(conn: Connection[Any], record: dict[str, Any], source: str, stores: dict[str, tuple[str, str]]) -> int:
    """Upsert one order and replace its children; returns the number of lines."""
    order_id = _text(record.get("order_id"))
    if order_id is None:
        raise BadRecordError("no order_id")
    order_id = normalise_id(order_id)
    lines = record.get("order_lines") or []
    if not isinstance(lines, list):
        raise BadRecordError("order_lines is not a list")
    customer, number, name = _store(record, stores)
    header = (
        order_id, customer, number, name, _text(record.get("store_name")), _text(record.get("ship_to_location")),
        _text(record.get("season_description")), _text(record.get("po_number")), _text(record.get("order_reason")),
        _text(record.get("order_source")), _text(record.get("planogram_description")),
        _text(record.get("order_status")), _money(record, "order_total"),
        parse_date(record.get("order_creation_date")), parse_date(record.get("actual_delivery_date")),
        parse_date(record.get("requested_delivery_date")), _text(record.get("comment_description")),
        _text(record.get("source_system_id")), len(lines), source, Jsonb(record),
    )  # fmt: skip
    cols: list[list[Any]] = [[] for _ in range(12)]
    for index, line in enumerate(lines, start=1):
        if not isinstance(line, dict):
            raise BadRecordError(f"order line {index} is not an object")
        values = (
            index, _int(line.get("line_item_number")), _text(line.get("location_id")),
            _text(line.get("material_number")), _text(line.get("stock_number")), _text(line.get("upc")),
            _text(line.get("material_description")), _money(line, "quantity"), _money(line, "unit_price"),
            _money(line, "wholesales"), _money(line, "retailsin1_wholesale"), Jsonb(line),
        )  # fmt: skip
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    details = {str(d.get("delivery_id")): d for d in record.get("deliveries") or [] if isinstance(d, dict)}
    deliveries = split_ids(record.get("delivery_id"))
    billing = split_ids(record.get("billing_document_number"))
    with conn.pipeline():
        conn.execute(UPSERT_ORDER, header)
        conn.execute(CLEAR_ORDER_CHILDREN, {"id": order_id})
        if lines:
            conn.execute(INSERT_ORDER_ITEMS, (order_id, *cols))
        if deliveries:
            raw = [Jsonb(details.get(d, {"delivery_id": d})) for d in deliveries]
            conn.execute(INSERT_ORDER_DELIVERIES, (order_id, deliveries, raw))
        if billing:
            conn.execute(
                INSERT_ORDER_BILLING, (order_id, billing, [Jsonb({"billing_document_number": b}) for b in billing])
            )
    return len(lines)


def import_billing(
    conn: Connection[Any], record: dict[str, Any], source: str, stores: dict[str, tuple[str, str]]
) -> int:
    billing_id = _text(record.get("billing_document_id") or record.get("billing_document_number"))
    if billing_id is None:
        raise BadRecordError("no billing_document_id")
    billing_id = normalise_id(billing_id)
    lines = record.get("billing_lines") or []
    if not isinstance(lines, list):
        lines = [lines]
    customer, number, name = _store(record, stores)
    header = (
        billing_id, customer, number, name, _text(record.get("store_name")),
        parse_date(record.get("billing_document_date")), _text(record.get("billing_document_type")),
        _text(record.get("billing_document_status")), _text(record.get("po_number")),
        _text(record.get("season_description")), _text(record.get("order_id")),
        _text(record.get("delivery_number")), _money(record, "total"), len(lines), source, Jsonb(record),
    )  # fmt: skip
    cols: list[list[Any]] = [[] for _ in range(8)]
    for index, line in enumerate(lines, start=1):
        if not isinstance(line, dict):
            raise BadRecordError(f"billing line {index} is not an object")
        quantity = line.get("billed_quantity", line.get("quantity"))
        values = (
            index, _int(line.get("line_item_number")), _text(line.get("material_number")),
            _text(line.get("material_description")), _money({"q": quantity}, "q"), _money(line, "unit_price"),
            _money(line, "net_amount"), Jsonb(line),
        )  # fmt: skip
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    with conn.pipeline():
        conn.execute(UPSERT_BILLING, header)
        conn.execute(CLEAR_BILLING_ITEMS, (billing_id,))
        if lines:
            conn.execute(INSERT_BILLING_ITEMS, (billing_id, *cols))
    return len(lines)


def load_stores(conn: Connection[Any]) -> dict[str, tuple[str, str]]:
    rows = conn.execute(STORES).fetchall()
    out = {}
    for row in rows:
        values = tuple(row.values()) if isinstance(row, dict) else tuple(row)
        out[str(values[0])] = (str(values[1]), str(values[2]))
    return out


def _import_files(
    db: Database,
    files: list[Path],
    summary: ImportSummary,
    lock: threading.Lock,
    fallback: dict[str, tuple[str, str]],
) -> None:
    with db.connect() as conn:
        # Durability of each commit is traded for speed here: every file stays on disk and
        # re-importing is idempotent (upsert + replace), so a crash loses nothing that a re-run cannot redo.
        conn.execute("SET synchronous_commit = off")
        conn.commit()
        stores = {**fallback, **load_stores(conn)}
        conn.commit()
        for path in files:
            kind_id = parse_file_name(path.name)
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(record, dict):
                    raise BadRecordError("top level is not a JSON object")
                with conn.transaction():
                    if kind_id and kind_id[0] == "order":
                        lines = import_order(conn, record, str(path), stores)
                        kind = "order"
                    else:
                        lines = import_billing(conn, record, str(path), stores)
                        kind = "billing"
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, BadRecordError) as exc:
                _fail(summary, lock, path, exc)
                continue
            except Exception as exc:  # a database error on one file must not stop the others
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
