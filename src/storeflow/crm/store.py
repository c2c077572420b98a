"""The CRM pipeline's database store: its SQL, its status words and the typed rows it returns.

Ledger (`download_ledger`), audit (`ingest_audit`), staging COPY (`stg_*`), upsert into `fact_*`,
rejects (`crm_rejects`), the per-store advisory lock, and the reads of `crm_download status`
and the dashboard. Every function receives its connection (dict rows) from the caller.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg import sql

from storeflow.crm.reports import ReportShape
from storeflow.logs import redact_error

STAGING = {"td": "stg_td_order_report", "uc": "stg_uc_gst_report"}
FACTS = {"td": "fact_td_orders", "uc": "fact_uc_gst"}

# ingest_audit.status: a file ingested, an identical file seen before, a report with no rows ...
INGEST_OK, INGEST_DUPLICATE, INGEST_EMPTY = "ok", "duplicate", "empty"
# ... a file or store that failed, a store whose session must be bootstrapped, a store already running
INGEST_FAILED, NEEDS_BOOTSTRAP, INGEST_SKIPPED = "failed", "needs_bootstrap", "skipped"
INGEST_SUCCESS = (INGEST_OK, INGEST_DUPLICATE, INGEST_EMPTY)
INGEST_PROBLEMS = (INGEST_FAILED, NEEDS_BOOTSTRAP)
# download_ledger.status: downloaded, then ingested / duplicate / empty / failed
LEDGER_DOWNLOADED, LEDGER_INGESTED = "downloaded", "ingested"


def ledger_status(ingest_status: str) -> str:
    """The ledger word for an ingest outcome (``ok`` -> ``ingested``, the others as they are)."""
    return LEDGER_INGESTED if ingest_status == INGEST_OK else ingest_status


@dataclass(frozen=True)
class FileInfo:
    run_id: uuid.UUID
    crm: str
    store: str  # store code
    report_type: str
    mode: str
    start: date
    end: date


@dataclass
class IngestResult:
    status: str  # one of INGEST_SUCCESS or INGEST_FAILED
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
        return self.status in INGEST_SUCCESS


@dataclass(frozen=True)
class IngestedFile:
    """A ledger row of a file already ingested (what makes an identical file a duplicate)."""

    id: int
    file_name: str
    downloaded_at: datetime


# ---------------------------------------------------------------- locks


def lock_key(store_key: str) -> int:
    """The advisory lock number of one store (stable across machines)."""
    return int(hashlib.sha1(f"storeflow-crm:{store_key}".encode()).hexdigest()[:15], 16)


def try_lock_store(conn: psycopg.Connection[Any], store_key: str) -> bool:
    """Session-level advisory lock: held until released or the connection closes."""
    row = conn.execute("SELECT pg_try_advisory_lock(%s) AS locked", (lock_key(store_key),)).fetchone()
    return bool(row and row["locked"])


def unlock_store(conn: psycopg.Connection[Any], store_key: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(store_key),))


# ---------------------------------------------------------------- ledger and audit

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
SELECT max(to_date) AS end FROM ingest_audit
WHERE crm = %s AND store = %s AND status = ANY(%s)
"""


def insert_ledger(conn: psycopg.Connection[Any], info: FileInfo, name: str, md5: str, size: int) -> int:
    """A `download_ledger` row in state ``downloaded``; returns its id."""
    row = conn.execute(
        INSERT_LEDGER,
        (info.run_id, info.crm, info.store, info.report_type, info.mode, name, md5, size, info.start, info.end),
    ).fetchone()
    assert row is not None
    return int(row["id"])


def find_ingested(
    conn: psycopg.Connection[Any], crm: str, store: str, md5: str, *, other_than: int = -1
) -> IngestedFile | None:
    """The first ingested file of the store with this md5 (other than ledger row ``other_than``)."""
    row = conn.execute(FIND_INGESTED, (crm, store, md5, other_than)).fetchone()
    return IngestedFile(row["id"], row["file_name"], row["downloaded_at"]) if row else None


def set_ledger_status(conn: psycopg.Connection[Any], ledger_id: int, status: str, error: str | None) -> None:
    conn.execute(SET_LEDGER_STATUS, (status, redact_error(error), ledger_id))


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


def store_rejects(
    conn: psycopg.Connection[Any], info: FileInfo, name: str, rejects: Sequence[tuple[int, str, str]]
) -> None:
    """The rejected rows (row number, remark, raw JSON) of one file into `crm_rejects`."""
    if rejects:
        with conn.cursor() as cur:
            cur.executemany(
                INSERT_REJECT, [(info.run_id, info.crm, info.store, name, n, remark, raw) for n, remark, raw in rejects]
            )


def last_success_end(conn: psycopg.Connection[Any], crm: str, store: str) -> date | None:
    """The end of the last successfully ingested window of a store (what the automatic window follows)."""
    row = conn.execute(LAST_SUCCESS_END, (crm, store, list(INGEST_SUCCESS))).fetchone()
    value = row["end"] if row else None
    return value if isinstance(value, date) else None


# ---------------------------------------------------------------- staging and facts

PURGE_STAGING = "DELETE FROM {} WHERE loaded_at < now() - interval '14 days'"


def copy_statement(crm: str, shape: ReportShape) -> sql.Composed:
    """``COPY stg_... (columns) FROM STDIN`` for rows of ``shape`` (the order `ingest.copy_text` writes)."""
    columns = ["run_id", "ledger_id", "row_number", "store_code", *shape.fields, "raw_data"]
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(STAGING[crm]), sql.SQL(", ").join(map(sql.Identifier, columns))
    )


def purge_staging(conn: psycopg.Connection[Any], crm: str) -> None:
    """Staging keeps 14 days of loaded rows (for inspection); older ones go."""
    conn.execute(sql.SQL(PURGE_STAGING).format(sql.Identifier(STAGING[crm])))


def upsert(
    conn: psycopg.Connection[Any],
    info: FileInfo,
    ledger_id: int,
    shape: ReportShape,
    *,
    unique_keys: bool = False,
    rows: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """Staging -> facts; returns (inserted, updated).

    ``unique_keys``: the file has each key once, so no DISTINCT ON (a sort of wide rows).
    ``rows``: only the staged rows whose row_number is in this (first, last) range (one chunk).
    """
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
        WHERE run_id = %s AND ledger_id = %s {range}
        {order}
        ON CONFLICT ({key}) DO UPDATE SET {sets}, updated_at = now()
        WHERE ({old}) IS DISTINCT FROM ({new})
        RETURNING (xmax = 0) AS inserted
        )
        SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) AS written FROM written
        """
    ).format(
        range=sql.SQL("AND row_number BETWEEN %s AND %s") if rows else sql.SQL(""),
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
    row = conn.execute(query, (info.run_id, ledger_id, *(rows or ()))).fetchone()
    assert row is not None
    inserted, written = int(row["inserted"]), int(row["written"])
    return inserted, written - inserted


# ---------------------------------------------------------------- reads (`crm_download status`, dashboard)

Row = dict[str, Any]

LAST_SUCCESS = """
SELECT from_date, to_date, finished_at FROM ingest_audit
WHERE crm = %s AND store = %s AND status = ANY(%s)
ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT 1
"""
LAST_FAILURE = """
SELECT status, error, finished_at FROM ingest_audit
WHERE crm = %s AND store = %s AND status = ANY(%s)
ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT 1
"""


def last_success(conn: psycopg.Connection[Any], crm: str, store: str) -> Row | None:
    """The store's last successful audit row: from_date, to_date, finished_at."""
    row: Row | None = conn.execute(LAST_SUCCESS, (crm, store, list(INGEST_SUCCESS))).fetchone()
    return row


def last_failure(conn: psycopg.Connection[Any], crm: str, store: str) -> Row | None:
    """The store's last failed (or needs_bootstrap) audit row: status, error, finished_at."""
    row: Row | None = conn.execute(LAST_FAILURE, (crm, store, list(INGEST_PROBLEMS))).fetchone()
    return row


# dashboard: an audit row with a file is an ingestion; one without a file is a store whose download
# failed (or whose session expired) before any file was obtained
LATEST_INGESTS = """
SELECT DISTINCT ON (crm, store) crm, store, status, error, started_at, finished_at
FROM ingest_audit WHERE file_name IS NOT NULL
ORDER BY crm, store, started_at DESC
"""
INGEST_SUCCESSES = """
SELECT crm, store, max(finished_at) AS last_success_at, max(to_date) AS freshness
FROM ingest_audit WHERE status = ANY(%s) GROUP BY crm, store
"""
DOWNLOAD_PROBLEMS = """
SELECT DISTINCT ON (crm, store) crm, store, status, error, started_at
FROM ingest_audit WHERE file_name IS NULL AND status = ANY(%s)
ORDER BY crm, store, started_at DESC
"""
DOWNLOAD_SUCCESSES = """
SELECT crm, store, max(downloaded_at) AS last_success_at, max(to_date) AS freshness
FROM download_ledger GROUP BY crm, store
"""

StoreKey = tuple[str, str]  # (crm, store code)


def _by_store(rows: Sequence[Row]) -> dict[StoreKey, Row]:
    return {(r["crm"], r["store"]): r for r in rows}


def latest_ingests(conn: psycopg.Connection[Any]) -> dict[StoreKey, Row]:
    """Per store, its last file ingestion: status, error, started_at, finished_at."""
    return _by_store(conn.execute(LATEST_INGESTS).fetchall())


def ingest_successes(conn: psycopg.Connection[Any]) -> dict[StoreKey, Row]:
    """Per store, its last successful ingestion (last_success_at) and the newest day ingested (freshness)."""
    return _by_store(conn.execute(INGEST_SUCCESSES, (list(INGEST_SUCCESS),)).fetchall())


def download_problems(conn: psycopg.Connection[Any]) -> dict[StoreKey, Row]:
    """Per store, its last failure before any file was obtained: status, error, started_at."""
    return _by_store(conn.execute(DOWNLOAD_PROBLEMS, (list(INGEST_PROBLEMS),)).fetchall())


def download_successes(conn: psycopg.Connection[Any]) -> dict[StoreKey, Row]:
    """Per store, its last download (last_success_at) and the newest day downloaded (freshness)."""
    return _by_store(conn.execute(DOWNLOAD_SUCCESSES).fetchall())


@dataclass(frozen=True)
class RecordFilter:
    """The operator's filter over ledger and audit rows; None matches everything."""

    crm: str | None = None
    store: str | None = None  # store code
    status: str | None = None
    date_from: date | None = None
    date_to: date | None = None

    def params(self) -> dict[str, Any]:
        return {
            "crm": self.crm,
            "code": self.store,
            "status": self.status,
            "dfrom": self.date_from,
            "dto": self.date_to,
        }


_MATCH = """(%(crm)s::text IS NULL OR crm = %(crm)s) AND (%(code)s::text IS NULL OR store = %(code)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)"""
LEDGER_WHERE = f"""
WHERE {_MATCH}
  AND (%(dfrom)s::date IS NULL OR downloaded_at >= %(dfrom)s::date)
  AND (%(dto)s::date IS NULL OR downloaded_at < %(dto)s::date + 1)
"""
AUDIT_WHERE = f"""
WHERE {_MATCH}
  AND (%(dfrom)s::date IS NULL OR started_at >= %(dfrom)s::date)
  AND (%(dto)s::date IS NULL OR started_at < %(dto)s::date + 1)
"""
LEDGER_ROWS = (
    "SELECT id, run_id, crm, store, report_type, file_name, md5, size, downloaded_at, status, from_date, to_date,"
    " error FROM download_ledger" + LEDGER_WHERE + "ORDER BY downloaded_at DESC, id DESC LIMIT 200"
)
LEDGER_TOTALS = "SELECT count(*) AS files, coalesce(sum(size), 0) AS bytes FROM download_ledger" + LEDGER_WHERE
AUDIT_ROWS = (
    "SELECT run_id, crm, store, from_date, to_date, inserted_rows, updated_rows, rejected_rows, md5, file_name,"
    " started_at, finished_at, status, error FROM ingest_audit" + AUDIT_WHERE + "ORDER BY started_at DESC LIMIT 200"
)
AUDIT_TOTALS = (
    "SELECT count(*) AS runs, coalesce(sum(inserted_rows), 0) AS inserted, coalesce(sum(updated_rows), 0) AS updated,"
    " coalesce(sum(rejected_rows), 0) AS rejected FROM ingest_audit" + AUDIT_WHERE
)
AUDIT_BY_STATUS = "SELECT status, count(*) AS n FROM ingest_audit" + AUDIT_WHERE + "GROUP BY status ORDER BY 1"
AUDIT_FAILURES = (
    "SELECT crm, store, status, coalesce(error, '(no reason recorded)') AS error, count(*) AS n, "
    "max(started_at) AS last_at FROM ingest_audit"
    + AUDIT_WHERE
    + "AND status = ANY(%(problems)s) GROUP BY 1, 2, 3, 4 ORDER BY last_at DESC LIMIT 50"
)
STATUSES_SEEN = "SELECT status FROM download_ledger UNION SELECT status FROM ingest_audit"
STORES_SEEN = "SELECT DISTINCT crm, store FROM ingest_audit ORDER BY 1, 2"
FACT_ROWS = "SELECT count(*) AS n FROM {}"


def ledger_rows(conn: psycopg.Connection[Any], where: RecordFilter) -> list[Row]:
    """The newest 200 ledger rows matching ``where``."""
    return conn.execute(LEDGER_ROWS, where.params()).fetchall()


def ledger_totals(conn: psycopg.Connection[Any], where: RecordFilter) -> Row:
    """files, bytes of the ledger rows matching ``where``."""
    row: Row | None = conn.execute(LEDGER_TOTALS, where.params()).fetchone()
    return row or {}


def audit_rows(conn: psycopg.Connection[Any], where: RecordFilter) -> list[Row]:
    """The newest 200 audit rows matching ``where``."""
    return conn.execute(AUDIT_ROWS, where.params()).fetchall()


def audit_totals(conn: psycopg.Connection[Any], where: RecordFilter) -> Row:
    """runs, inserted, updated, rejected over the audit rows matching ``where``."""
    row: Row | None = conn.execute(AUDIT_TOTALS, where.params()).fetchone()
    return row or {}


def audit_by_status(conn: psycopg.Connection[Any], where: RecordFilter) -> list[Row]:
    return conn.execute(AUDIT_BY_STATUS, where.params()).fetchall()


def audit_failures(conn: psycopg.Connection[Any], where: RecordFilter) -> list[Row]:
    """Failures (INGEST_PROBLEMS) grouped by store, status and error, newest first."""
    return conn.execute(AUDIT_FAILURES, where.params() | {"problems": list(INGEST_PROBLEMS)}).fetchall()


def statuses_seen(conn: psycopg.Connection[Any]) -> list[str]:
    """Every status word the ledger and the audit hold, sorted."""
    return sorted(r["status"] for r in conn.execute(STATUSES_SEEN).fetchall() if r["status"])


def stores_seen(conn: psycopg.Connection[Any]) -> list[StoreKey]:
    """Every (crm, store) the audit names."""
    return [(r["crm"], r["store"]) for r in conn.execute(STORES_SEEN).fetchall()]


def fact_rows(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Row count per fact table."""
    out = {}
    for table in FACTS.values():
        row = conn.execute(sql.SQL(FACT_ROWS).format(sql.Identifier(table))).fetchone()
        out[table] = int(row["n"]) if row else 0
    return out
