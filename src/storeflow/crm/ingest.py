"""Ingestion of one downloaded file, in one transaction: ledger, staging COPY, fact upsert, rejects, audit.

Query code receives its connection from the caller.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from itertools import repeat
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from storeflow.crm.files import file_md5
from storeflow.crm.reports import (
    ParsedReport,
    ReportError,
    ReportShape,
    copy_text_column,
    gc_paused,
    parse_report,
)
from storeflow.logs import get_logger, redact_error

STAGING = {"td": "stg_td_order_report", "uc": "stg_uc_gst_report"}
FACTS = {"td": "fact_td_orders", "uc": "fact_uc_gst"}
FACT_DATE = {"td": "order_date", "uc": "invoice_date"}
FACT_AMOUNT = {"td": "net_amount", "uc": "final_amount"}
SUCCESS = ("ok", "empty", "duplicate")

INSERT_LEDGER = """
INSERT INTO download_ledger (run_id, crm, store, report_type, mode, file_name, md5, size, from_date, to_date, status)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'downloaded')
RETURNING id
"""
FIND_INGESTED = """
SELECT id, file_name, downloaded_at FROM download_ledger
WHERE crm = %s AND store = %s AND md5 = %s AND status = 'ingested' AND id <> %s
ORDER BY id LIMIT 1
"""
SET_LEDGER_STATUS = "UPDATE download_ledger SET status = %s, error = %s WHERE id = %s"
INSERT_AUDIT = """
INSERT INTO ingest_audit (run_id, crm, store, from_date, to_date, inserted_rows, updated_rows, unchanged_rows,
                          rejected_rows, md5, file_name, mode, started_at, finished_at, status, error)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now(), %s, %s)
"""
INSERT_REJECT = """
INSERT INTO crm_rejects (run_id, crm, store, file_name, row_number, remark, raw_data)
VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb)
"""
LAST_SUCCESS_END = """
SELECT max(to_date) FROM ingest_audit
WHERE crm = %s AND store = %s AND status = ANY(%s)
"""
COPY_CHUNK_ROWS = 5000
PURGE_STAGING = "DELETE FROM {} WHERE loaded_at < now() - interval '14 days'"


@dataclass
class IngestResult:
    status: str  # ok | duplicate | empty | failed
    file_name: str
    md5: str
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    error: str | None = None
    ledger_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS


@dataclass(frozen=True)
class FileInfo:
    run_id: uuid.UUID
    crm: str
    store: str  # store code
    report_type: str
    mode: str
    start: date
    end: date


def lock_key(store_key: str) -> int:
    """The advisory lock number of one store (stable across machines)."""
    return int(hashlib.sha1(f"storeflow-crm:{store_key}".encode()).hexdigest()[:15], 16)


def try_lock_store(conn: psycopg.Connection[Any], store_key: str) -> bool:
    """Session-level advisory lock: held until released or the connection closes."""
    return bool(_scalar(conn.execute("SELECT pg_try_advisory_lock(%s)", (lock_key(store_key),)).fetchone()))


def unlock_store(conn: psycopg.Connection[Any], store_key: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(store_key),))


def last_success_end(conn: psycopg.Connection[Any], crm: str, store: str) -> date | None:
    value = _scalar(conn.execute(LAST_SUCCESS_END, (crm, store, list(SUCCESS))).fetchone())
    return value if isinstance(value, date) else None


def _scalar(row: Any) -> Any:
    if row is None:
        return None
    return next(iter(row.values()))


def record_audit(
    conn: psycopg.Connection[Any],
    info: FileInfo,
    status: str,
    *,
    started_at: datetime,
    error: str | None = None,
    result: IngestResult | None = None,
) -> None:
    """One `ingest_audit` row (also for stores that never got a file: failed / needs_bootstrap)."""
    r = result
    conn.execute(
        INSERT_AUDIT,
        (
            info.run_id,
            info.crm,
            info.store,
            info.start,
            info.end,
            r.inserted if r else 0,
            r.updated if r else 0,
            r.unchanged if r else 0,
            r.rejected if r else 0,
            r.md5 if r else None,
            r.file_name if r else None,
            info.mode,
            started_at,
            status,
            redact_error(error),
        ),
    )


def ingest_file(conn: psycopg.Connection[Any], path: Path, info: FileInfo) -> IngestResult:
    """Ledger, parse, COPY to staging, upsert to facts, rejects and audit: all or nothing for the file."""
    log = get_logger("storage", f"{info.crm}_{info.store}")
    started = datetime.now().astimezone()
    md5 = file_md5(path)
    size = path.stat().st_size
    result = IngestResult("failed", path.name, md5)
    parsed: ParsedReport | None = None
    parse_error: str | None = None
    seen = conn.execute(FIND_INGESTED, (info.crm, info.store, md5, -1)).fetchone()
    conn.rollback()
    if seen is None:  # an identical, already ingested file is not parsed again
        try:
            parsed = parse_report(path, info.crm)
        except ReportError as exc:
            parse_error = str(exc)
    try:
        with conn.transaction():
            ledger_id = _ledger(conn, info, path.name, md5, size)
            result.ledger_id = ledger_id
            previous = conn.execute(FIND_INGESTED, (info.crm, info.store, md5, ledger_id)).fetchone()
            if previous is not None:
                prev = (
                    previous if isinstance(previous, dict) else dict(zip(("id", "file_name"), previous, strict=False))
                )
                result.status = "duplicate"
                result.error = f"identical to {prev['file_name']} (ledger id {prev['id']}), already ingested"
            elif parse_error is not None:
                result.error = parse_error
            elif parsed is not None and parsed.data_rows == 0:
                result.status = "empty"
                result.error = "the report has no data rows"
            elif parsed is not None and not parsed.row_numbers:
                result.rejected = len(parsed.rejects)
                _store_rejects(conn, info, path.name, parsed)
                result.error = f"all {result.rejected} data rows rejected (see crm_rejects): {parsed.rejects[0][1]}"
            elif parsed is not None:
                with gc_paused():
                    _copy_staging(conn, info, ledger_id, parsed)
                distinct = _distinct_keys(parsed)
                unique = distinct == len(parsed.row_numbers)
                result.inserted, result.updated = upsert(conn, info, ledger_id, parsed.shape, unique_keys=unique)
                result.unchanged = distinct - result.inserted - result.updated
                result.rejected = len(parsed.rejects)
                _store_rejects(conn, info, path.name, parsed)
                result.status = "ok"
            ledger_status = {"ok": "ingested"}.get(result.status, result.status)
            conn.execute(SET_LEDGER_STATUS, (ledger_status, redact_error(result.error), ledger_id))
            record_audit(conn, info, result.status, started_at=started, error=result.error, result=result)
    except psycopg.Error as exc:
        # the file's transaction rolled back: nothing of it reached staging or facts
        result = IngestResult("failed", path.name, md5, error=f"database error: {exc}".strip())
        with conn.transaction():
            ledger_id = _ledger(conn, info, path.name, md5, size)
            conn.execute(SET_LEDGER_STATUS, ("failed", redact_error(result.error), ledger_id))
            record_audit(conn, info, "failed", started_at=started, error=result.error, result=result)
    level = log.info if result.ok else log.error
    level(
        "%s %s: %s inserted=%d updated=%d unchanged=%d rejected=%d%s",
        path.name,
        md5,
        result.status,
        result.inserted,
        result.updated,
        result.unchanged,
        result.rejected,
        f" ({result.error})" if result.error else "",
        event="ingest",
    )
    return result


def _ledger(conn: psycopg.Connection[Any], info: FileInfo, name: str, md5: str, size: int) -> int:
    row = conn.execute(
        INSERT_LEDGER,
        (info.run_id, info.crm, info.store, info.report_type, info.mode, name, md5, size, info.start, info.end),
    ).fetchone()
    assert row is not None
    return int(row["id"])


def _copy_staging(conn: psycopg.Connection[Any], info: FileInfo, ledger_id: int, parsed: ParsedReport) -> None:
    with conn.cursor() as cur, cur.copy(copy_statement(info.crm, parsed)) as copy:
        # a chunk at a time, so the server loads one chunk while the next is formatted
        for chunk in copy_chunks(info, ledger_id, parsed):
            copy.write(chunk)
    conn.execute(sql.SQL(PURGE_STAGING).format(sql.Identifier(STAGING[info.crm])))


def copy_statement(crm: str, parsed: ParsedReport) -> sql.Composed:
    """``COPY stg_... (columns) FROM STDIN`` for the rows of ``parsed``."""
    columns = ["run_id", "ledger_id", "row_number", "store_code", *parsed.shape.fields, "raw_data"]
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(STAGING[crm]), sql.SQL(", ").join(map(sql.Identifier, columns))
    )


def copy_chunks(info: FileInfo, ledger_id: int, parsed: ParsedReport) -> Iterator[str]:
    """The staging rows as COPY text, ``COPY_CHUNK_ROWS`` at a time.

    Built column by column (C-level str ops, not write_row per cell).
    """
    head, store = f"{info.run_id}\t{ledger_id}\t", copy_text_column([info.store])[0]
    numbers = parsed.row_numbers
    for start in range(0, len(numbers), COPY_CHUNK_ROWS):
        end = start + COPY_CHUNK_ROWS
        texts = [copy_text_column(column[start:end]) for column in parsed.columns]
        texts.append(copy_text_column(parsed.raw_json(start, end)))
        prefix = map(head.__add__, map(str, numbers[start:end]))
        lines = map("\t".join, zip(prefix, repeat(store), *texts))
        yield "\n".join(lines) + "\n"


def upsert(
    conn: psycopg.Connection[Any], info: FileInfo, ledger_id: int, shape: ReportShape, *, unique_keys: bool = False
) -> tuple[int, int]:
    """Staging -> facts. ``unique_keys``: the file has each key once, so no DISTINCT ON (a sort of wide rows)."""
    staging, fact = STAGING[info.crm], FACTS[info.crm]
    fields = [f for f in shape.fields if f not in shape.key]
    key = list(shape.key)
    ident = sql.Identifier
    cols = ["run_id", "ledger_id", *key, *fields, "raw_data"]
    key_list = sql.SQL(", ").join(map(ident, key))
    query = sql.SQL(
        """
        WITH written AS (
        INSERT INTO {fact} ({cols}, first_run_id)
        SELECT {distinct} {cols}, run_id FROM {staging}
        WHERE run_id = %s AND ledger_id = %s
        {order}
        ON CONFLICT ({key}) DO UPDATE SET {sets}, updated_at = now()
        WHERE ({old}) IS DISTINCT FROM ({new})
        RETURNING (xmax = 0) AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) AS written FROM written
        """
    ).format(
        distinct=sql.SQL("") if unique_keys else sql.SQL("DISTINCT ON ({})").format(key_list),
        order=sql.SQL("") if unique_keys else sql.SQL("ORDER BY {}, row_number DESC").format(key_list),
        fact=ident(fact),
        staging=ident(staging),
        cols=sql.SQL(", ").join(map(ident, cols)),
        key=sql.SQL(", ").join(map(ident, key)),
        sets=sql.SQL(", ").join(
            sql.SQL("{} = EXCLUDED.{}").format(ident(c), ident(c)) for c in ["run_id", "ledger_id", *fields, "raw_data"]
        ),
        old=sql.SQL(", ").join(sql.SQL("{}.{}").format(ident(fact), ident(c)) for c in fields),
        new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(ident(c)) for c in fields),
    )
    row = conn.execute(query, (info.run_id, ledger_id)).fetchone()
    assert row is not None
    inserted, written = row["inserted"], row["written"]
    return int(inserted), int(written) - int(inserted)


def _distinct_keys(parsed: ParsedReport) -> int:
    fields = parsed.shape.fields
    positions = [fields.index(k) for k in parsed.shape.key if k in fields]
    return len(set(zip(*(parsed.columns[p] for p in positions), strict=True)))


def _store_rejects(conn: psycopg.Connection[Any], info: FileInfo, name: str, parsed: ParsedReport) -> None:
    if parsed.rejects:
        with conn.cursor() as cur:
            cur.executemany(
                INSERT_REJECT,
                [(info.run_id, info.crm, info.store, name, n, remark, raw) for n, remark, raw in parsed.rejects],
            )
