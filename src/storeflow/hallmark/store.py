"""Hallmark's database seam: every statement on its tables, its status words and the rows it returns.

The run checkpoint (`hallmark_runs`, `hallmark_run_items`, and the core's `pipeline_runs` row of each
run) is what `--resume` continues. The importer's upserts are built from one table of fields per
document (column, record key, converter). The dashboard reads through the functions at the end.
Every function takes its connection (dict rows) from the caller.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from psycopg import Connection, sql
from psycopg.types.json import Jsonb

from storeflow.hallmark.records import normalise_id, parse_count, parse_date, parse_int, parse_money, parse_text
from storeflow.logs import redact_error
from storeflow.settings import HallmarkStore

PIPELINE = "hallmark"  # pipeline_runs.pipeline and session_checks.pipeline/session_key

# hallmark_runs.status
RUN_RUNNING, RUN_OK, RUN_FAILED, RUN_STOPPED = "running", "ok", "failed", "stopped"
RESUMABLE = (RUN_RUNNING, RUN_STOPPED, RUN_FAILED)
# hallmark_run_items.status; a run fetches (again) its pending and failed items
ITEM_PENDING, ITEM_DOWNLOADED, ITEM_SKIPPED, ITEM_FAILED = "pending", "downloaded", "skipped", "failed"
ITEM_STATUSES = (ITEM_PENDING, ITEM_DOWNLOADED, ITEM_SKIPPED, ITEM_FAILED)
TODO = (ITEM_PENDING, ITEM_FAILED)


# ---------------------------------------------------------------- rows


@dataclass(frozen=True)
class Run:
    """One `hallmark_runs` row."""

    run_id: uuid.UUID
    kind: str
    params: dict[str, Any]
    status: str
    started_at: datetime
    finished_at: datetime | None
    search_complete: bool
    downloaded: int
    skipped: int
    failed: int
    last_error: str | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Run:
        return cls(**{name: row[name] for name in RUN_COLUMNS})


RUN_COLUMNS = tuple(f.name for f in fields(Run))


class RunItem(NamedTuple):
    """A record a run still has to fetch."""

    kind: str  # "order" or "billing"
    record_id: str
    customer_id: str | None


@dataclass(frozen=True)
class Tally:
    """A run's items by status."""

    downloaded: int = 0
    skipped: int = 0
    failed: int = 0
    pending: int = 0

    @property
    def total(self) -> int:
        return self.downloaded + self.skipped + self.failed + self.pending

    def as_dict(self) -> dict[str, int]:
        return {"downloaded": self.downloaded, "skipped": self.skipped, "failed": self.failed,
                "pending": self.pending, "total": self.total}  # fmt: skip


# ---------------------------------------------------------------- runs and run items

_RUN_SELECT = "SELECT " + ", ".join(RUN_COLUMNS) + " FROM hallmark_runs"
INSERT_RUN = "INSERT INTO hallmark_runs (run_id, kind, params) VALUES (%s, %s, %s)"
# the core's cross-pipeline audit row (dashboard "last runs"), same run_id
INSERT_PIPELINE_RUN = """
INSERT INTO pipeline_runs (run_id, pipeline, command, summary) VALUES (%(run_id)s, %(pipeline)s, %(kind)s, %(summary)s)
ON CONFLICT (run_id) DO UPDATE SET status = %(running)s, finished_at = NULL, error = NULL
"""
FINISH_PIPELINE_RUN = """
UPDATE pipeline_runs SET status = %s, finished_at = now(), summary = %s, error = %s WHERE run_id = %s
"""
LATEST_UNFINISHED = (
    _RUN_SELECT
    + """
WHERE status = ANY(%s) AND (%s::text IS NULL OR kind = %s)
ORDER BY started_at DESC LIMIT 1
"""
)
REOPEN_RUN = "UPDATE hallmark_runs SET status = %s, finished_at = NULL, last_error = NULL WHERE run_id = %s"
MARK_SEARCHED = "UPDATE hallmark_runs SET search_complete = true WHERE run_id = %s"
INSERT_ITEM = """
INSERT INTO hallmark_run_items (run_id, kind, record_id, position, customer_id, search_row)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (run_id, kind, record_id) DO NOTHING
"""
TODO_ITEMS = """
SELECT kind, record_id, customer_id FROM hallmark_run_items
WHERE run_id = %s AND status = ANY(%s)
ORDER BY position, record_id
"""
UPDATE_ITEM = """
UPDATE hallmark_run_items
SET status = %s, error = %s, path = %s, attempts = attempts + %s, updated_at = now()
WHERE run_id = %s AND kind = %s AND record_id = %s
"""
COUNT_ITEMS = "SELECT status, count(*) AS n FROM hallmark_run_items WHERE run_id = %s GROUP BY status"
FINISH_RUN = """
UPDATE hallmark_runs
SET status = %s, finished_at = now(), downloaded = %s, skipped = %s, failed = %s, last_error = %s
WHERE run_id = %s
"""
RECENT_RUNS = _RUN_SELECT + " ORDER BY started_at DESC LIMIT %s"
# A complete window: the run ended ok and left no item pending (a --search-only run that found
# records leaves them pending). The latest end wins, so a backfill of an old window never moves it back.
LAST_WINDOW_END = """
SELECT max((r.params->>'end')::date) AS window_end FROM hallmark_runs r
WHERE r.kind = %s AND r.status = %s AND r.params->>'end' IS NOT NULL
  AND NOT EXISTS (SELECT FROM hallmark_run_items i WHERE i.run_id = r.run_id AND i.status = %s)
"""
DOWNLOADED_FILES = """
SELECT path FROM hallmark_run_items WHERE run_id = %s AND status = %s AND path IS NOT NULL ORDER BY path
"""


def create_run(conn: Connection[Any], kind: str, params: dict[str, Any]) -> uuid.UUID:
    """A new run (status running) and its `pipeline_runs` row; ``params`` is what `--resume` reuses."""
    run_id = uuid.uuid4()
    conn.execute(INSERT_RUN, (run_id, kind, Jsonb(params)))
    _open_pipeline_run(conn, run_id, kind, params)
    return run_id


def _open_pipeline_run(conn: Connection[Any], run_id: uuid.UUID, kind: str, summary: dict[str, Any]) -> None:
    conn.execute(
        INSERT_PIPELINE_RUN,
        {"run_id": run_id, "pipeline": PIPELINE, "kind": kind, "summary": Jsonb(summary), "running": RUN_RUNNING},
    )


def find_resumable(conn: Connection[Any], kind: str | None) -> Run | None:
    """The latest run that did not end ok (of ``kind``, when given)."""
    row = conn.execute(LATEST_UNFINISHED, (list(RESUMABLE), kind, kind)).fetchone()
    return None if row is None else Run.from_row(row)


def reopen(conn: Connection[Any], run_id: uuid.UUID, kind: str) -> None:
    conn.execute(REOPEN_RUN, (RUN_RUNNING, run_id))
    _open_pipeline_run(conn, run_id, kind, {"resumed": True})


def mark_searched(conn: Connection[Any], run_id: uuid.UUID) -> None:
    conn.execute(MARK_SEARCHED, (run_id,))


def add_items(conn: Connection[Any], run_id: uuid.UUID, kind: str, rows: list[tuple[str, str | None, Any]]) -> None:
    """rows: (record_id, customer_id, search_row); position follows the given order."""
    with conn.cursor() as cur:
        cur.executemany(
            INSERT_ITEM,
            [
                (run_id, kind, rid, pos, cust, Jsonb(row) if row is not None else None)
                for pos, (rid, cust, row) in enumerate(rows)
            ],
        )


def todo(conn: Connection[Any], run_id: uuid.UUID) -> list[RunItem]:
    """The run's pending and failed items, in search order."""
    rows = conn.execute(TODO_ITEMS, (run_id, list(TODO))).fetchall()
    return [RunItem(str(row["kind"]), str(row["record_id"]), row["customer_id"]) for row in rows]


def update_item(
    conn: Connection[Any],
    run_id: uuid.UUID,
    kind: str,
    record_id: str,
    status: str,
    error: str | None = None,
    path: str | None = None,
    attempted: bool = True,
) -> None:
    conn.execute(UPDATE_ITEM, (status, redact_error(error), path, 1 if attempted else 0, run_id, kind, record_id))


def counts(conn: Connection[Any], run_id: uuid.UUID) -> Tally:
    by_status = {row["status"]: int(row["n"]) for row in conn.execute(COUNT_ITEMS, (run_id,)).fetchall()}
    return Tally(
        downloaded=by_status.get(ITEM_DOWNLOADED, 0),
        skipped=by_status.get(ITEM_SKIPPED, 0),
        failed=by_status.get(ITEM_FAILED, 0),
        pending=by_status.get(ITEM_PENDING, 0),
    )


def finish(
    conn: Connection[Any],
    run_id: uuid.UUID,
    status: str,
    tally: Tally,
    error: str | None,
    portal: dict[str, int] | None = None,
) -> None:
    """Record the run's end in `hallmark_runs` and `pipeline_runs` (``portal``: request figures)."""
    error = redact_error(error)
    conn.execute(FINISH_RUN, (status, tally.downloaded, tally.skipped, tally.failed, error, run_id))
    conn.execute(FINISH_PIPELINE_RUN, (status, Jsonb({**tally.as_dict(), **(portal or {})}), error, run_id))


def recent_runs(conn: Connection[Any], limit: int = 10) -> list[Run]:
    """The latest runs, newest first."""
    return [Run.from_row(r) for r in conn.execute(RECENT_RUNS, (limit,)).fetchall()]


def last_successful_window(conn: Connection[Any], kind: str) -> date | None:
    """The end date (``--end-date``) of the latest complete run of a bulk ``kind``, or None.

    ``kind`` is ``"bulk-orders"`` or ``"bulk-billing-documents"``. A run counts when it ended ``ok``
    with no item left pending; of those, the latest end date wins (a later backfill of an older
    window does not move it back).
    """
    row = conn.execute(LAST_WINDOW_END, (kind, RUN_OK, ITEM_PENDING)).fetchone()
    return None if row is None else row["window_end"]


def downloaded_files(conn: Connection[Any], run_id: uuid.UUID) -> list[str]:
    """The paths of the files a run downloaded (its items with status downloaded), sorted."""
    rows = conn.execute(DOWNLOADED_FILES, (run_id, ITEM_DOWNLOADED)).fetchall()
    return [str(r["path"]) for r in rows]


# ---------------------------------------------------------------- stores and session checks

UPSERT_STORE = """
INSERT INTO stores (customer_id, store_number, store_name, raw_data, updated_at)
VALUES (%s, %s, %s, %s, now())
ON CONFLICT (customer_id) DO UPDATE SET store_number = EXCLUDED.store_number, store_name = EXCLUDED.store_name,
    raw_data = EXCLUDED.raw_data, updated_at = now()
WHERE (stores.store_number, stores.store_name, stores.raw_data)
    IS DISTINCT FROM (EXCLUDED.store_number, EXCLUDED.store_name, EXCLUDED.raw_data)
"""
STORES = "SELECT customer_id, store_number, store_name FROM stores"
RECORD_SESSION_CHECK = """
INSERT INTO session_checks (session_key, pipeline, path, saved_at, checked_at, valid, detail)
VALUES (%(key)s, %(key)s, %(path)s, now(), now(), %(valid)s, %(detail)s)
ON CONFLICT (session_key) DO UPDATE SET path = EXCLUDED.path, checked_at = now(),
    valid = EXCLUDED.valid, detail = EXCLUDED.detail,
    saved_at = CASE WHEN EXCLUDED.valid THEN now() ELSE session_checks.saved_at END
"""


def upsert_stores(conn: Connection[Any], stores: list[HallmarkStore]) -> int:
    """Upsert the canonical store mapping; returns how many rows were inserted or changed."""
    changed = 0
    for store in stores:
        cur = conn.execute(
            UPSERT_STORE,
            (normalise_id(store.customer_id), store.store_number, store.store_name, Jsonb(store.model_dump())),
        )
        changed += cur.rowcount
    return changed


def load_stores(conn: Connection[Any]) -> dict[str, tuple[str, str]]:
    """customer_id -> (store number, store name) from the `stores` table."""
    rows = conn.execute(STORES).fetchall()
    return {str(row["customer_id"]): (str(row["store_number"]), str(row["store_name"])) for row in rows}


def record_session_check(conn: Connection[Any], path: str, valid: bool) -> None:
    """The result of `storeflow hallmark auth-test` for the dashboard's sessions page."""
    detail = "auth-test ok" if valid else "saved session invalid"
    conn.execute(RECORD_SESSION_CHECK, {"key": PIPELINE, "path": path, "valid": valid, "detail": detail})


# ---------------------------------------------------------------- import statements


@dataclass(frozen=True)
class Converter:
    """How a record's value becomes a column's: the SQL type (for ``jsonb_to_recordset``) and the parser.

    A parser raises ValueError for a value it refuses; the importer names the key.
    """

    sql_type: str
    parse: Callable[[Any], Any]


def _amount_text(value: Any) -> str | None:
    amount = parse_money(value)
    return None if amount is None else str(amount)


TEXT = Converter("text", parse_text)
INT = Converter("int", parse_int)
MONEY = Converter("numeric", parse_money)  # a Decimal, for a bound parameter
AMOUNT = Converter("numeric", _amount_text)  # the same amount as exact decimal text, inside the lines' JSON
COUNT = Converter("int", parse_count)
DATE = Converter("date", parse_date)


@dataclass(frozen=True)
class Field:
    """A column filled from a record: ``key`` (else ``fallback`` when ``key`` is absent) through ``convert``.

    ``convert`` None: the importer supplies the value itself (ids, the store, the file, the line count).
    """

    column: str
    convert: Converter | None = TEXT
    key: str = ""  # "" means the column's own name
    fallback: str | None = None

    @property
    def record_key(self) -> str:
        return self.key or self.column


SUPPLIED = None


@dataclass(frozen=True)
class Link:
    """A child table of ids the header lists (``delivery_id: "8001, 8002"``), replaced on each import."""

    table: str
    column: str
    param: str  # JSON [{id, raw}] under ``param``, the ids as text[] under ``param_ids``


@dataclass(frozen=True)
class Document:
    """One record file's tables: its header row, its line rows and its link rows."""

    table: str
    header: tuple[Field, ...]  # the first field is the primary key
    lines_table: str
    lines_key: str  # the record key of the line list
    lines: tuple[Field, ...]  # besides line_index (1-based position) and raw_data (the line's JSON)
    links: tuple[Link, ...] = ()
    single_line_object: bool = False  # a record may hold one line as an object instead of a list

    @property
    def key(self) -> str:
        return self.header[0].column


ORDERS = Document(
    table="orders",
    header=(
        Field("order_id", SUPPLIED), Field("customer_id", SUPPLIED), Field("store_number", SUPPLIED),
        Field("store_name", SUPPLIED), Field("portal_store_name", key="store_name"), Field("ship_to_location"),
        Field("season_description"), Field("po_number"), Field("order_reason"), Field("order_source"),
        Field("planogram_description"), Field("order_status"), Field("order_total", MONEY),
        Field("order_creation_date", DATE), Field("actual_delivery_date", DATE),
        Field("requested_delivery_date", DATE), Field("comment_description"), Field("source_system_id"),
        Field("line_count", SUPPLIED), Field("source_file", SUPPLIED),
    ),
    lines_table="order_items",
    lines_key="order_lines",
    lines=(
        Field("line_item_number", INT), Field("location_id"), Field("material_number"), Field("stock_number"),
        Field("upc"), Field("material_description"), Field("quantity", AMOUNT), Field("unit_price", AMOUNT),
        Field("wholesales", AMOUNT), Field("retailsin1_wholesale", COUNT),
    ),
    links=(
        Link("order_deliveries", "delivery_id", "deliveries"),
        Link("order_billing_documents", "billing_document_number", "billing"),
    ),
)  # fmt: skip
BILLING = Document(
    table="billing_documents",
    header=(
        Field("billing_document_id", SUPPLIED), Field("customer_id", SUPPLIED), Field("store_number", SUPPLIED),
        Field("store_name", SUPPLIED), Field("portal_store_name", key="store_name"),
        Field("billing_document_date", DATE), Field("billing_document_type"), Field("billing_document_status"),
        Field("po_number"), Field("season_description"), Field("order_id"), Field("delivery_number"),
        Field("total", MONEY), Field("line_count", SUPPLIED), Field("source_file", SUPPLIED),
    ),
    lines_table="billing_document_items",
    lines_key="billing_lines",
    lines=(
        Field("line_item_number", INT), Field("material_number"), Field("material_description"),
        Field("quantity", AMOUNT, key="billed_quantity", fallback="quantity"), Field("unit_price", AMOUNT),
        Field("net_amount", AMOUNT),
    ),
    single_line_object=True,
)  # fmt: skip


def _names(columns: Iterable[str], prefix: str = "") -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(prefix, c) if prefix else sql.Identifier(c) for c in columns)


def _updates(columns: Iterable[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns)


def _sql_type(f: Field) -> str:
    if f.convert is None:
        raise TypeError(f"line field {f.column} needs a converter")
    return f.convert.sql_type


_HEADER = """WITH doc AS (SELECT %(raw)s::jsonb AS raw), header AS (
    INSERT INTO {table} ({columns}, raw_data, imported_at)
    VALUES ({values}, (SELECT raw FROM doc), now())
    ON CONFLICT ({key}) DO UPDATE SET {updates}, raw_data = EXCLUDED.raw_data, imported_at = now()
)"""
_LINES = """, lines AS (
    INSERT INTO {table} ({key}, line_index, {columns}, raw_data)
    SELECT {key_value}, x.line_index, {x_columns}, {line_raw}
    FROM doc, jsonb_to_recordset(%(lines)s::jsonb) AS x({recordset})
    ON CONFLICT ({key}, line_index) DO UPDATE SET {updates}, raw_data = EXCLUDED.raw_data
), old_lines AS (
    DELETE FROM {table} WHERE {key} = {key_value} AND line_index > %(line_count)s
)"""
_LINK = """, {name} AS (
    INSERT INTO {table} ({key}, {column}, raw_data)
    SELECT {key_value}, l.id, l.raw FROM jsonb_to_recordset({param}::jsonb) AS l(id text, raw jsonb)
    ON CONFLICT ({key}, {column}) DO UPDATE SET raw_data = EXCLUDED.raw_data
), {old_name} AS (
    DELETE FROM {table} WHERE {key} = {key_value} AND NOT {column} = ANY({ids}::text[])
)"""
_LINE_RAW = "doc.raw -> {lines} -> (x.line_index - 1)"
# a record that holds its one line as an object instead of a list
_LINE_RAW_OR_OBJECT = (
    f"CASE jsonb_typeof(doc.raw -> {{lines}}) WHEN 'array' THEN {_LINE_RAW} ELSE doc.raw -> {{lines}} END"
)


def _upsert_document(doc: Document) -> str:
    """One statement for one file (an implicit transaction): the header upserted, its lines and links
    upserted by key, and the lines and links the file no longer has deleted.

    The upserted and the deleted child rows are disjoint, which is what makes a single statement with
    several data-modifying CTEs well defined.
    """
    key, key_value = sql.Identifier(doc.key), sql.Placeholder(doc.key)
    header = [f.column for f in doc.header]
    lines = [f.column for f in doc.lines]
    recordset = sql.SQL(", ").join(
        [sql.SQL("line_index int")]
        + [sql.SQL("{} {}").format(sql.Identifier(f.column), sql.SQL(_sql_type(f))) for f in doc.lines]
    )
    line_raw = sql.SQL(_LINE_RAW_OR_OBJECT if doc.single_line_object else _LINE_RAW).format(
        lines=sql.Literal(doc.lines_key)
    )
    parts: list[sql.Composable] = [
        sql.SQL(_HEADER).format(
            table=sql.Identifier(doc.table),
            columns=_names(header),
            values=sql.SQL(", ").join(map(sql.Placeholder, header)),
            key=key,
            updates=_updates(header[1:]),
        ),
        sql.SQL(_LINES).format(
            table=sql.Identifier(doc.lines_table),
            key=key,
            key_value=key_value,
            columns=_names(lines),
            x_columns=_names(lines, "x"),
            line_raw=line_raw,
            recordset=recordset,
            updates=_updates(lines),
        ),
    ]
    for n, link in enumerate(doc.links):
        parts.append(
            sql.SQL(_LINK).format(
                name=sql.Identifier(f"link_{n}"),
                old_name=sql.Identifier(f"old_link_{n}"),
                table=sql.Identifier(link.table),
                key=key,
                key_value=key_value,
                column=sql.Identifier(link.column),
                param=sql.Placeholder(link.param),
                ids=sql.Placeholder(link.param + "_ids"),
            )
        )
    parts.append(sql.SQL("\nSELECT 1"))
    return sql.Composed(parts).as_string()


IMPORT_ORDER = _upsert_document(ORDERS)
IMPORT_BILLING = _upsert_document(BILLING)


# ---------------------------------------------------------------- dashboard reads


@dataclass(frozen=True)
class SessionState:
    """The latest failed `auth-test` check and the latest good one."""

    invalid_at: datetime | None = None
    invalid_detail: str | None = None
    valid_at: datetime | None = None


@dataclass(frozen=True)
class Freshness:
    latest_order_date: date | None
    stores: int


@dataclass(frozen=True)
class OrderTotals:
    orders: int
    lines: int
    total: Decimal


NO_ORDERS = OrderTotals(0, 0, Decimal(0))


@dataclass(frozen=True)
class StoreMonthTotal:
    store_number: str | None
    store_name: str | None
    month: str | None  # "YYYY-MM"; None for orders without a creation date
    orders: int
    total: Decimal


LAST_OK_AT = "SELECT max(finished_at) AS at FROM hallmark_runs WHERE status = %s"
FRESHNESS = "SELECT max(order_creation_date) AS at, count(DISTINCT store_number) AS stores FROM orders"
SESSION_INVALID = """
SELECT checked_at, detail FROM session_checks WHERE pipeline = %s AND NOT valid ORDER BY checked_at DESC LIMIT 1
"""
SESSION_VALID_SINCE = "SELECT max(checked_at) AS at FROM session_checks WHERE pipeline = %s AND valid"
ITEM_COUNTS = """
SELECT run_id, status, count(*) AS n FROM hallmark_run_items
WHERE run_id = ANY(%s) GROUP BY run_id, status ORDER BY run_id, status
"""
STORE_MONTH_TOTALS = """
SELECT store_number, max(store_name) AS store_name,
       to_char(date_trunc('month', order_creation_date), 'YYYY-MM') AS month,
       count(*) AS orders, coalesce(sum(order_total), 0) AS total
FROM orders GROUP BY store_number, date_trunc('month', order_creation_date)
ORDER BY month DESC, store_number
LIMIT 5000
"""
ORDER_TOTALS = """
SELECT count(*) AS orders, coalesce(sum(line_count), 0) AS lines, coalesce(sum(order_total), 0) AS total FROM orders
"""
# the orders a run fetched that are imported (the demo's comparison with the simulator's truth)
RUN_ORDER_TOTALS = """
SELECT count(*) AS orders, coalesce(sum(o.line_count), 0) AS lines, coalesce(sum(o.order_total), 0) AS total
FROM orders o JOIN hallmark_run_items i ON i.record_id = o.order_id AND i.kind = 'order'
WHERE i.run_id = %s
"""


def last_run(conn: Connection[Any]) -> Run | None:
    runs = recent_runs(conn, 1)
    return runs[0] if runs else None


def last_ok_at(conn: Connection[Any]) -> datetime | None:
    """When the latest run that ended ok finished."""
    row = conn.execute(LAST_OK_AT, (RUN_OK,)).fetchone()
    return None if row is None else row["at"]


def freshness(conn: Connection[Any]) -> Freshness:
    """The newest imported order's creation date and how many stores have orders."""
    row = conn.execute(FRESHNESS).fetchone()
    return Freshness(None, 0) if row is None else Freshness(row["at"], int(row["stores"] or 0))


def session_state(conn: Connection[Any]) -> SessionState:
    bad = conn.execute(SESSION_INVALID, (PIPELINE,)).fetchone()
    good = conn.execute(SESSION_VALID_SINCE, (PIPELINE,)).fetchone()
    return SessionState(
        invalid_at=bad["checked_at"] if bad else None,
        invalid_detail=bad["detail"] if bad else None,
        valid_at=good["at"] if good else None,
    )


def item_counts(conn: Connection[Any], run_ids: list[uuid.UUID]) -> dict[str, dict[str, int]]:
    """str(run_id) -> {item status: count}."""
    out: dict[str, dict[str, int]] = {}
    if run_ids:
        for r in conn.execute(ITEM_COUNTS, (run_ids,)).fetchall():
            out.setdefault(str(r["run_id"]), {})[r["status"]] = int(r["n"])
    return out


def store_month_totals(conn: Connection[Any]) -> list[StoreMonthTotal]:
    """Imported orders per store number and month, newest month first."""
    return [
        StoreMonthTotal(r["store_number"], r["store_name"], r["month"], int(r["orders"]), r["total"])
        for r in conn.execute(STORE_MONTH_TOTALS).fetchall()
    ]


def _totals(row: dict[str, Any] | None) -> OrderTotals:
    if row is None:
        return NO_ORDERS
    return OrderTotals(int(row["orders"]), int(row["lines"]), Decimal(row["total"]))


def order_totals(conn: Connection[Any]) -> OrderTotals:
    """Every imported order: count, lines and the sum of their totals."""
    return _totals(conn.execute(ORDER_TOTALS).fetchone())


def run_order_totals(conn: Connection[Any], run_id: uuid.UUID) -> OrderTotals:
    """The imported orders among a run's items."""
    return _totals(conn.execute(RUN_ORDER_TOTALS, (run_id,)).fetchone())
