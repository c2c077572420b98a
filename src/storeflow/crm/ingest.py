"""Ingestion of one downloaded file, in one transaction: read -> convert -> COPY to staging -> upsert -> audit.

The SQL and the status words are `crm/store.py`'s; this module is the flow. Conversion and COPY
overlap: a thread converts the report a chunk at a time into COPY text (at most ``QUEUE_CHUNKS``
chunks ahead, so memory stays bounded) while the calling thread streams the previous chunk into
PostgreSQL. The connection comes from the caller.
"""

from __future__ import annotations

import gc
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import repeat
from pathlib import Path
from typing import Any

import psycopg

from storeflow.crm import store
from storeflow.crm.files import file_md5
from storeflow.crm.reports import ParsedReport, RawReport, ReportError, read_report
from storeflow.crm.store import FileInfo, IngestResult
from storeflow.logs import get_logger

COPY_CHUNK_ROWS = 5000
QUEUE_CHUNKS = 2  # converted chunks waiting for COPY: bounds memory to a few chunks of COPY text

# ---------------------------------------------------------------- COPY text format

COPY_NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NONE = type(None)


def _copy_cell(value: Any) -> str:
    if value is None:
        return COPY_NULL
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value).translate(_COPY_ESCAPES)


def copy_text_column(values: Sequence[Any]) -> list[str]:
    """One column as PostgreSQL COPY text fields (NULL as ``\\N``, backslash/tab/newline escaped).

    Whole columns at a time, with fast paths for the common all-text / all-number columns.
    """
    kinds = set(map(type, values))
    nulls = _NONE in kinds
    kinds.discard(_NONE)
    if kinds <= {str}:
        texts = [COPY_NULL if v is None else v for v in values] if nulls else list(values)
        joined = "".join(filter(None, values))
        if "\\" not in joined and "\t" not in joined and "\n" not in joined and "\r" not in joined:
            return texts
        if "\t" not in joined and "\n" not in joined and "\r" not in joined:
            return [COPY_NULL if v is None else v.replace("\\", "\\\\") for v in values]
    elif kinds <= {float, int}:
        return [COPY_NULL if v is None else str(v) for v in values] if nulls else list(map(str, values))
    elif kinds == {datetime} or kinds == {date}:
        iso: Callable[[Any], str] = datetime.isoformat if datetime in kinds else date.isoformat
        return [COPY_NULL if v is None else iso(v) for v in values] if nulls else list(map(iso, values))
    return list(map(_copy_cell, values))


def copy_text(info: FileInfo, ledger_id: int, parsed: ParsedReport) -> str:
    """The kept rows of ``parsed`` as COPY text, in `store.copy_statement`'s column order.

    Built column by column (C-level str ops, not write_row per cell).
    """
    if not parsed.row_numbers:
        return ""
    head, code = f"{info.run_id}\t{ledger_id}\t", copy_text_column([info.store])[0]
    texts = [copy_text_column(column) for column in parsed.columns]
    texts.append(copy_text_column(parsed.raw_json()))
    prefix = map(head.__add__, map(str, parsed.row_numbers))
    return "\n".join(map("\t".join, zip(prefix, repeat(code), *texts, strict=False))) + "\n"


@contextmanager
def gc_paused() -> Iterator[None]:
    # Parsing allocates millions of acyclic containers (cells, rows); the cyclic collector would
    # rescan them over and over (superlinear on 100k-row reports). Refcounting frees them anyway.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# ---------------------------------------------------------------- the flow


def ingest_file(conn: psycopg.Connection[Any], path: Path, info: FileInfo) -> IngestResult:
    """Ledger, parse, COPY to staging, upsert to facts, rejects and audit: all or nothing for the file."""
    log = get_logger("storage", f"{info.crm}_{info.store}")
    started = datetime.now().astimezone()
    md5 = file_md5(path)
    size = path.stat().st_size
    result = IngestResult(store.INGEST_FAILED, path.name, md5)
    raw: RawReport | None = None
    parse_error: str | None = None
    seen = store.find_ingested(conn, info.crm, info.store, md5)
    conn.rollback()
    try:
        with gc_paused():
            if seen is None:  # an identical, already ingested file is not read again
                try:
                    raw = read_report(path, info.crm)
                except ReportError as exc:
                    parse_error = str(exc)
            with conn.transaction():
                ledger_id = store.insert_ledger(conn, info, path.name, md5, size)
                result.ledger_id = ledger_id
                previous = store.find_ingested(conn, info.crm, info.store, md5, other_than=ledger_id)
                if previous is not None:
                    result.status = store.INGEST_DUPLICATE
                    result.error = f"identical to {previous.file_name} (ledger id {previous.id}), already ingested"
                elif parse_error is not None:
                    result.error = parse_error
                elif raw is not None:
                    _load(conn, info, ledger_id, path.name, raw, result)
                store.set_ledger_status(conn, ledger_id, store.ledger_status(result.status), result.error)
                store.record_audit(conn, info, result.status, started_at=started, error=result.error, result=result)
    except psycopg.Error as exc:
        # the file's transaction rolled back: nothing of it reached staging or facts
        result = IngestResult(store.INGEST_FAILED, path.name, md5, error=f"database error: {exc}".strip())
        with conn.transaction():
            ledger_id = store.insert_ledger(conn, info, path.name, md5, size)
            store.set_ledger_status(conn, ledger_id, store.INGEST_FAILED, result.error)
            store.record_audit(conn, info, store.INGEST_FAILED, started_at=started, error=result.error, result=result)
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


def _load(
    conn: psycopg.Connection[Any], info: FileInfo, ledger_id: int, name: str, raw: RawReport, result: IngestResult
) -> None:
    """Staging, facts and rejects of a readable report; sets ``result``'s status and counts."""
    store.purge_staging(conn, info.crm)
    # each key once in the file: every chunk is upserted as soon as it is staged (same rows, same counts
    # as one upsert at the end); otherwise the last row of a key must win across chunks, so one upsert
    each_chunk = raw.keys_unique()
    loaded = stream_rows(conn, info, ledger_id, raw, upsert_chunks=each_chunk)
    result.rejected = len(loaded.rejects)
    if loaded.data_rows == 0:
        result.status, result.error = store.INGEST_EMPTY, "the report has no data rows"
        return
    store.store_rejects(conn, info, name, loaded.rejects)
    if loaded.rows == 0:
        result.error = f"all {result.rejected} data rows rejected (see crm_rejects): {loaded.rejects[0][1]}"
        return
    distinct = len(loaded.keys)
    if each_chunk:
        result.inserted, result.updated = loaded.inserted, loaded.updated
    else:
        unique = distinct == loaded.rows
        result.inserted, result.updated = store.upsert(conn, info, ledger_id, raw.shape, unique_keys=unique)
    result.unchanged = distinct - result.inserted - result.updated
    result.status = store.INGEST_OK


@dataclass
class Loaded:
    """What `stream_rows` put into staging (and facts), and what it kept out."""

    rows: int = 0  # rows copied
    data_rows: int = 0  # copied + rejected (footers are not data)
    rejects: list[tuple[int, str, str]] = field(default_factory=list)
    keys: set[tuple[Any, ...]] = field(default_factory=set)  # distinct keys of the copied rows
    inserted: int = 0  # by the per-chunk upserts
    updated: int = 0


@dataclass(frozen=True)
class _Chunk:
    text: str  # COPY text of the chunk's kept rows
    rows: tuple[int, int]  # first and last row number in it


def stream_rows(
    conn: psycopg.Connection[Any], info: FileInfo, ledger_id: int, raw: RawReport, *, upsert_chunks: bool
) -> Loaded:
    """Convert ``raw`` and COPY its kept rows into staging (and, with ``upsert_chunks``, upsert each chunk).

    A producer thread converts chunk n+1 (pure Python) while this thread streams chunk n and
    waits for PostgreSQL to load and upsert it (the socket waits release the GIL; the server
    works on its own core). At most ``QUEUE_CHUNKS`` converted chunks wait, so memory stays
    bounded. An error on either side raises here, inside the caller's transaction.
    """
    loaded = Loaded()
    chunks: queue.Queue[_Chunk | BaseException | None] = queue.Queue(maxsize=QUEUE_CHUNKS)
    stop = threading.Event()
    shape = raw.shape
    key_slots = [shape.fields.index(k) for k in shape.key if k in shape.fields]

    def hand_over(item: _Chunk | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for parsed in raw.chunks(COPY_CHUNK_ROWS):
                loaded.rows += len(parsed.row_numbers)
                loaded.data_rows += parsed.data_rows
                loaded.rejects += parsed.rejects
                if not parsed.row_numbers:
                    continue
                loaded.keys.update(zip(*(parsed.columns[p] for p in key_slots), strict=True))
                chunk = _Chunk(copy_text(info, ledger_id, parsed), (parsed.row_numbers[0], parsed.row_numbers[-1]))
                if not hand_over(chunk):
                    return
            hand_over(None)
        except BaseException as exc:  # handed to the COPY side, which raises it
            hand_over(exc)

    producer = threading.Thread(target=produce, name=f"crm-convert-{info.crm}_{info.store}", daemon=True)
    producer.start()
    statement = store.copy_statement(info.crm, shape)
    try:
        with conn.cursor() as cur:
            while (item := chunks.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                with cur.copy(statement) as copy:
                    copy.write(item.text)
                if upsert_chunks:
                    inserted, updated = store.upsert(conn, info, ledger_id, shape, unique_keys=True, rows=item.rows)
                    loaded.inserted += inserted
                    loaded.updated += updated
    finally:
        stop.set()
        producer.join()
    return loaded
