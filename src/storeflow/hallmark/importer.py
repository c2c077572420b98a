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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import Connection
from psycopg.pq import TransactionStatus

from storeflow.db.connect import Database
from storeflow.hallmark import store
from storeflow.hallmark.records import normalise_id, parse_file_name, parse_text, split_ids
from storeflow.logs import get_logger

log = get_logger("storage")


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


@dataclass(frozen=True)
class Plan:
    """A document part's fields as the importer applies them: (column, record key, parser), and the
    (key, fallback key) pairs where a record may name a value either way."""

    fields: tuple[tuple[str, str, Callable[[Any], Any]], ...]
    fallbacks: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, fields: tuple[store.Field, ...]) -> Plan:
        """The fields that have a converter; the importer supplies the others (``store.SUPPLIED``)."""
        return cls(
            tuple((f.column, f.record_key, f.convert.parse) for f in fields if f.convert is not None),
            tuple((f.record_key, f.fallback) for f in fields if f.fallback is not None),
        )


ORDER_HEADER, ORDER_LINES = Plan.of(store.ORDERS.header), Plan.of(store.ORDERS.lines)
BILLING_HEADER, BILLING_LINES = Plan.of(store.BILLING.header), Plan.of(store.BILLING.lines)


def _convert(plan: Plan, record: dict[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    given = record
    for key, fallback in plan.fallbacks:
        if key not in given:
            record = {**record, key: given.get(fallback)}
    get = record.get
    for column, key, parse in plan.fields:
        try:
            out[column] = parse(get(key))
        except ValueError as exc:
            named = next((f for k, f in plan.fallbacks if k == key and k not in given), key)
            raise BadRecordError(f"{named}: {exc}") from None
    return out


def _lines(plan: Plan, lines: list[Any], what: str) -> str:
    """The lines as the JSON array ``jsonb_to_recordset`` reads."""
    rows = []
    for index, line in enumerate(lines, start=1):
        if not isinstance(line, dict):
            raise BadRecordError(f"{what} {index} is not an object")
        rows.append(_convert(plan, line, {"line_index": index}))
    return json.dumps(rows)


def _store(record: dict[str, Any], stores: dict[str, tuple[str, str]]) -> tuple[str | None, str | None, str | None]:
    customer = parse_text(record.get("customer_id") or record.get("customer_number"))
    if customer is not None:
        customer = normalise_id(customer)
    portal_name = parse_text(record.get("store_name"))
    known = stores.get(customer or "")
    if known:
        return customer, known[0], known[1]
    return customer, customer, portal_name


def _header(
    plan: Plan,
    record: dict[str, Any],
    stores: dict[str, tuple[str, str]],
    key: tuple[str, str],
    line_count: int,
    source: str,
    raw_text: str | None,
) -> dict[str, Any]:
    customer, number, name = _store(record, stores)
    params = {key[0]: key[1], "customer_id": customer, "store_number": number, "store_name": name,
              "line_count": line_count, "source_file": source,
              "raw": raw_text if raw_text is not None else json.dumps(record)}  # fmt: skip
    return _convert(plan, record, params)


Statements = list[tuple[str, Any]]


def order_statements(
    record: dict[str, Any], source: str, stores: dict[str, tuple[str, str]], raw_text: str | None = None
) -> tuple[Statements, int]:
    """The statements that upsert one order and replace its children, and its line count (no I/O)."""
    order_id = parse_text(record.get("order_id"))
    if order_id is None:
        raise BadRecordError("no order_id")
    lines = record.get("order_lines") or []
    if not isinstance(lines, list):
        raise BadRecordError("order_lines is not a list")
    params = _header(ORDER_HEADER, record, stores, ("order_id", normalise_id(order_id)), len(lines), source, raw_text)
    params["lines"] = _lines(ORDER_LINES, lines, "order line")
    details = {str(d.get("delivery_id")): d for d in record.get("deliveries") or [] if isinstance(d, dict)}
    deliveries = list(dict.fromkeys(split_ids(record.get("delivery_id"))))
    billing = list(dict.fromkeys(split_ids(record.get("billing_document_number"))))
    params["deliveries_ids"] = deliveries
    params["deliveries"] = json.dumps([{"id": d, "raw": details.get(d, {"delivery_id": d})} for d in deliveries])
    params["billing_ids"] = billing
    params["billing"] = json.dumps([{"id": b, "raw": {"billing_document_number": b}} for b in billing])
    return [(store.IMPORT_ORDER, params)], len(lines)


def billing_statements(
    record: dict[str, Any], source: str, stores: dict[str, tuple[str, str]], raw_text: str | None = None
) -> tuple[Statements, int]:
    """The statements that upsert one billing document and replace its lines (no I/O)."""
    billing_id = parse_text(record.get("billing_document_id") or record.get("billing_document_number"))
    if billing_id is None:
        raise BadRecordError("no billing_document_id")
    lines = record.get("billing_lines") or []
    if not isinstance(lines, list):
        lines = [lines]
    key = ("billing_document_id", normalise_id(billing_id))
    params = _header(BILLING_HEADER, record, stores, key, len(lines), source, raw_text)
    params["lines"] = _lines(BILLING_LINES, lines, "billing line")
    return [(store.IMPORT_BILLING, params)], len(lines)


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
        stores = {**fallback, **store.load_stores(conn)}
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
    return import_files(db, find_files(data_dir), workers, fallback_stores)


def import_files(
    db: Database,
    files: list[Path],
    workers: int = 2,
    fallback_stores: dict[str, tuple[str, str]] | None = None,
) -> ImportSummary:
    """Import exactly ``files`` (record files, e.g. the ones one extraction wrote), as `import_directory` does.

    A file that is missing or cannot be read or imported is reported in ``failed`` by its path; the others
    still import. The same file named twice is imported once.
    """
    fallback = fallback_stores or {}
    files = sorted(set(files))
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
