"""The ESL pipeline's data access: its SQL, its status words and the rows it returns.

The SQL is in ``esl/queries.sql`` as named blocks (loaded once, by name); everything else in
``esl/``, the dashboard included, calls the functions here or runs the named constants.

Queue states are explicit text: ``pending`` -> ``in_progress`` -> ``succeeded`` | ``failed``
(permanent error) | ``dead`` (retry budget spent). "Dead letters" are the items in ``failed`` or
``dead``. Claims use ``FOR UPDATE SKIP LOCKED`` and set a lease (``locked_until``); an item whose
worker vanished returns to ``pending`` once its lease has passed. Functions receive their
connection from the caller and leave the transaction to it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import TYPE_CHECKING, Any

from psycopg import sql

from storeflow.logs import redact_error

if TYPE_CHECKING:
    from storeflow.esl.models import StoreMappingIn, StoreMappingUpdate

Row = dict[str, Any]


def _load_queries() -> dict[str, str]:
    """``-- name: x`` blocks of queries.sql, by name (the text up to the next block)."""
    text = resources.files("storeflow.esl").joinpath("queries.sql").read_text(encoding="utf-8")
    parts = re.split(r"^-- name: (\w+)\n", text, flags=re.MULTILINE)
    return {name: body.strip() + "\n" for name, body in zip(parts[1::2], parts[2::2], strict=True)}


QUERIES = _load_queries()

# ---------------------------------------------------------------- status words

CHANNEL = "esl_sync"  # NOTIFY channel that wakes the workers
STATES = ("pending", "in_progress", "succeeded", "failed", "dead")
WAITING_STATES = ("pending", "in_progress")
# dead letters: `failed` (permanent error) and `dead` (out of attempts), as `storeflow esl retry` sees them
DEAD_STATES = ("failed", "dead")
# webhook_inbox outcomes that put nothing on the queue because the delivery was refused or redundant
WEBHOOK_REJECTED = ("ignored", "duplicate", "invalid", "stale", "unmatched")
# one claim at a time across all workers, so "no other worker holds this product" is exact
CLAIM_LOCK_KEY = int(hashlib.sha1(b"storeflow-esl-claim").hexdigest()[:15], 16)

# ---------------------------------------------------------------- the worker's statements

CLAIM = QUERIES["claim"]
EXPIRED = QUERIES["expired"]
RETURN_EXPIRED = QUERIES["return_expired"]
HEARTBEAT = QUERIES["heartbeat"]
NEXT_DUE = QUERIES["next_due"]
FINISH = QUERIES["finish"]
INGEST = QUERIES["ingest_webhooks"]
NOTIFY = QUERIES["notify_workers"]
PING = QUERIES["ping"]
LISTEN = f"LISTEN {CHANNEL}"
STORE_RATE_LIMITS = QUERIES["store_rate_limits"]


@dataclass(frozen=True, slots=True)
class ClaimedItem:
    """A queue item as CLAIM hands it to a worker: the item, its product's label fields and its
    mapping's options. The fields are CLAIM's columns (`from_row` refuses any other row)."""

    id: int
    store_code: str
    product_id: int
    operation: str
    attempts: int
    store_mapping_id: int | None = None
    inbox_id: int | None = None
    enqueued_at: datetime | None = None
    answered_errors: int = 0
    retrying_for: float | None = None  # seconds since the item first failed (None: it has not)
    pc: str | None = None
    pn: str | None = None
    pp: str | None = None
    pi: str | None = None
    pim: str | None = None
    stock: int | None = None
    product_status: str | None = None  # valid | invalid | deleted
    validation_errors: str | None = None
    sent_pc: str | None = None  # the code Hipoink holds for the product (hipoink_products)
    stock_field: str | None = None
    mapping_active: bool | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ClaimedItem:
        return cls(**row)

    def label_fields(self) -> dict[str, Any]:
        """What `transform.hipoink_product` builds the Hipoink product from."""
        return {"pc": self.pc, "pn": self.pn, "pp": self.pp, "pi": self.pi, "pim": self.pim, "stock": self.stock}

    @property
    def code(self) -> str | None:
        """The product code to remove on a delete: the one Hipoink holds, else the current one."""
        return self.sent_pc or self.pc


@dataclass
class ItemResult:
    """What happened to one claimed queue item in one attempt."""

    item: ClaimedItem
    state: str  # next queue state
    log_status: str  # sync_log status: succeeded | retry | failed | dead
    error: str | None = None
    delay: float = 0.0
    http_status: int | None = None
    error_code: int | None = None
    detail: str | None = None
    sent_at: datetime | None = None
    acked_at: datetime | None = None
    pc: str | None = None
    sent_payload: dict[str, Any] | None = None  # an upsert Hipoink now holds
    removed: bool = False  # a delete Hipoink has applied
    answered: int | None = None  # retryable errors Hipoink answered so far (None: unchanged)


def finish_params(results: Sequence[ItemResult], worker: str) -> dict[str, Any]:
    """Parameters for FINISH: one jsonb row per item (its next state, its log row, what Hipoink now holds)."""
    rows = [
        {
            "id": r.item.id,
            "state": r.state,
            "delay": r.delay,
            "error": redact_error(r.error),
            "answered": r.answered if r.answered is not None else r.item.answered_errors,
            "inbox_id": r.item.inbox_id,
            "store_code": r.item.store_code,
            "product_id": r.item.product_id,
            "pc": r.pc or r.item.pc or r.item.sent_pc,
            "operation": r.item.operation,
            "attempt": r.item.attempts,
            "status": r.log_status,
            "http_status": r.http_status,
            "error_code": r.error_code,
            "detail": r.detail,
            "enqueued_at": _iso(r.item.enqueued_at),
            "sent_at": _iso(r.sent_at),
            "acked_at": _iso(r.acked_at),
            "payload": r.sent_payload if r.log_status == "succeeded" else None,
            "removed": r.removed,
        }
        for r in results
    ]
    return {"worker": worker, "rows": json.dumps(rows)}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# ---------------------------------------------------------------- worker steps (async)


async def claim_items(conn: Any, *, limit: int, worker: str, lease: float) -> list[ClaimedItem]:
    """Claim up to ``limit`` due items (one claim at a time across all workers; caller's transaction)."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK_KEY,))
    cur = await conn.execute(CLAIM, {"limit": limit, "worker": worker, "lease": lease})
    return [ClaimedItem.from_row(r) for r in await cur.fetchall()]


async def renew_leases(conn: Any, *, worker: str, lease: float, ids: list[int]) -> None:
    await conn.execute(HEARTBEAT, {"lease": lease, "worker": worker, "ids": ids})


async def expired_items(conn: Any) -> list[Row]:
    """Items whose worker stopped renewing the lease, locked for `return_expired` in the same transaction."""
    rows: list[Row] = await (await conn.execute(EXPIRED)).fetchall()
    return rows


async def return_expired(conn: Any, rows: list[Row], worker: str) -> None:
    await (await conn.execute(RETURN_EXPIRED, {"rows": json.dumps(rows), "worker": worker})).fetchall()


async def next_due(conn: Any) -> tuple[float | None, int]:
    """(seconds until the next pending item is due, None when none is; items in progress)."""
    row = await (await conn.execute(NEXT_DUE)).fetchone()
    assert row is not None
    wait = row["wait"]
    return (max(0.0, wait) if wait is not None else None), row["in_progress"]


async def record_results(conn: Any, params: dict[str, Any]) -> Row:
    """Run FINISH with `finish_params`; returns its counts (finished, logged, remembered, forgotten)."""
    row: Row | None = await (await conn.execute(FINISH, params)).fetchone()
    assert row is not None
    return row


async def ingest_deliveries_async(conn: Any, deliveries: list[dict[str, Any]]) -> list[Row]:
    """`esl_ingest_webhook` for each delivery, one statement; one row per delivery, in order."""
    rows: list[Row] = await (await conn.execute(INGEST, (json.dumps(deliveries),))).fetchall()
    return rows


async def notify_workers_async(conn: Any) -> None:
    await conn.execute(NOTIFY, (CHANNEL,))


# ---------------------------------------------------------------- webhooks and reconciliation (sync)


def ingest_deliveries(conn: Any, deliveries: list[dict[str, Any]]) -> list[Row]:
    """The same call a webhook makes, for a reconciliation's synthetic deliveries."""
    rows: list[Row] = conn.execute(INGEST, (json.dumps(deliveries, default=str),)).fetchall()
    return rows


def notify_workers(conn: Any) -> None:
    conn.execute(NOTIFY, (CHANNEL,))


def mark_reconciled(conn: Any, inbox_ids: list[int]) -> None:
    """Queue items of these inbox rows came from a reconciliation (``reason = 'reconcile'``)."""
    conn.execute(QUERIES["mark_reconciled"], (inbox_ids,))


def deactivate_product(conn: Any, *, shop: str, product: str, updated_at: datetime, mapping_id: int) -> int:
    """Mark a product's variants deleted (newer wins) and enqueue their deletes; returns items enqueued."""
    cur = conn.execute(
        QUERIES["deactivate_product"],
        {"shop": shop, "product": product, "updated_at": updated_at, "mapping": mapping_id},
    )
    return int(cur.rowcount or 0)


def active_mapping(conn: Any, shop: str) -> Row | None:
    """(id, hipoink_store_code) of the shop's active Shopify mapping, None without one."""
    row: Row | None = conn.execute(QUERIES["active_mapping"], (shop,)).fetchone()
    return row


def stored_variants(conn: Any, shop: str, product_ids: list[str] | None = None) -> list[Row]:
    rows: list[Row] = conn.execute(QUERIES["stored_variants"], {"shop": shop, "ids": product_ids}).fetchall()
    return rows


def last_high_water(conn: Any, shop: str) -> datetime | None:
    row = conn.execute(QUERIES["last_high_water"], (shop,)).fetchone()
    return row["high_water"] if row else None


def newest_stored(conn: Any, shop: str) -> datetime | None:
    row = conn.execute(QUERIES["newest_stored"], (shop,)).fetchone()
    return row["t"] if row else None


def last_webhook_at(conn: Any, shop: str, source_header: str) -> datetime | None:
    """When the shop's last delivery without ``source_header`` (one Shopify sent) was received."""
    row = conn.execute(QUERIES["last_webhook_at"], (shop, source_header)).fetchone()
    return row["t"] if row else None


def start_reconcile_run(conn: Any, shop: str, mapping_id: int, mode: str, trigger: str, since: datetime | None) -> int:
    row = conn.execute(QUERIES["start_reconcile_run"], (shop, mapping_id, mode, trigger, since)).fetchone()
    run_id: int = row["id"]
    return run_id


def finish_reconcile_run(conn: Any, values: dict[str, Any]) -> None:
    """``values``: the run's counts and outcome, by reconcile_runs column (and ``run_id``)."""
    conn.execute(QUERIES["finish_reconcile_run"], values)


def shop_overview_rows(conn: Any, source_header: str) -> list[Row]:
    rows: list[Row] = conn.execute(QUERIES["shop_overview"], {"source": source_header}).fetchall()
    return rows


def record_subscription_check(
    conn: Any,
    shop: str,
    action: str,
    expected: int,
    present: int,
    missing: list[str],
    created: list[str],
    deleted: list[str],
    run_id: int | None,
    error: str | None,
) -> None:
    conn.execute(
        QUERIES["record_subscription_check"],
        (shop, action, expected, present, missing, created, deleted, run_id, error),
    )


# ---------------------------------------------------------------- operator functions (sync)


def queue_stats(conn: Any) -> dict[str, Any]:
    """Counts by state (overall and per store), oldest pending age in seconds, last errors, inbox outcomes."""
    counts = dict.fromkeys(STATES, 0)
    by_store: dict[str, dict[str, int]] = {}
    for row in conn.execute(QUERIES["state_counts_by_store"]).fetchall():
        store, state, n = row["store_code"], row["state"], row["n"]
        counts[state] = counts.get(state, 0) + n
        by_store.setdefault(store, dict.fromkeys(STATES, 0))[state] = n
    oldest = conn.execute(QUERIES["pending_age_and_due"]).fetchone()
    age, due = oldest["age"], oldest["due"]
    errors = conn.execute(QUERIES["last_errors"]).fetchall()
    inbox = conn.execute(QUERIES["inbox_outcomes_last_day"]).fetchall()
    latency = conn.execute(QUERIES["latency_last_hour"]).fetchone()
    return {
        "counts": counts,
        "by_store": by_store,
        "due_pending": due or 0,
        "oldest_pending_age_seconds": round(age, 3) if age is not None else None,
        "dead_letters": sum(counts[s] for s in DEAD_STATES),
        "last_errors": [dict(r) for r in errors],
        "inbox_last_24h": {r["outcome"]: r["n"] for r in inbox},
        "latency_ms_last_hour": {"p50": latency["p50"], "p99": latency["p99"], "count": latency["n"]},
    }


def retry_dead_letters(conn: Any, item_ids: list[int] | None = None, store_code: str | None = None) -> int:
    """Re-enqueue dead letters (``failed`` and ``dead`` items), optionally only some ids or one store.

    They get a full set of attempts again; the workers are woken. Returns how many were re-enqueued.
    """
    row = conn.execute(
        QUERIES["retry_dead_letters"], {"ids": item_ids, "store": store_code, "channel": CHANNEL}
    ).fetchone()
    count: int = row["n"]
    return count


def dead_letters(conn: Any, store_code: str | None = None, limit: int = 50) -> list[Row]:
    """The newest dead letters with their product code and last error."""
    rows = conn.execute(QUERIES["dead_letters"], {"store": store_code, "limit": limit}).fetchall()
    return [dict(r) for r in rows]


def store_code_known(conn: Any, store_code: str) -> bool:
    """Whether some store mapping (active or not) names this Hipoink store code."""
    return conn.execute(QUERIES["store_code_known"], (store_code,)).fetchone() is not None


def enqueue_resync(conn: Any, store_code: str) -> dict[str, int]:
    """Re-send every known product of a Hipoink store (Shopify's advice: reconcile periodically).

    Valid products of the store's active mappings are enqueued as upserts; deleted products that
    Hipoink still holds are enqueued as deletes.
    """
    row = conn.execute(QUERIES["enqueue_resync"], {"store": store_code, "channel": CHANNEL}).fetchone()
    return {"upserts": row["upserts"], "deletes": row["deletes"], "invalid_not_sent": row["invalid"]}


def store_sync_counts(conn: Any, store_code: str) -> tuple[int, int]:
    """(valid products of the store, sync_log rows of variants refused as invalid): what the demo checks."""
    valid = conn.execute(QUERIES["valid_products_of_store"], (store_code,)).fetchone()
    invalid = conn.execute(QUERIES["invalid_log_rows_of_store"], (store_code,)).fetchone()
    return int(valid["n"]), int(invalid["n"])


# ---------------------------------------------------------------- store mappings

MAPPING_COLUMNS = (
    "id, source_system, source_store_id, hipoink_store_code, is_active, pc_fallback, stock_field, "
    "created_at, updated_at"
)
INSERT_MAPPING = f"""
INSERT INTO store_mappings (source_system, source_store_id, hipoink_store_code, is_active, pc_fallback, stock_field)
VALUES (%(source_system)s, %(source_store_id)s, %(hipoink_store_code)s, %(is_active)s, %(pc_fallback)s,
        %(stock_field)s)
ON CONFLICT (source_system, source_store_id) DO NOTHING
RETURNING {MAPPING_COLUMNS}
"""
LIST_MAPPINGS = f"SELECT {MAPPING_COLUMNS} FROM store_mappings ORDER BY id"
GET_MAPPING = f"SELECT {MAPPING_COLUMNS} FROM store_mappings WHERE id = %s"


def update_mapping_query(changes: dict[str, Any]) -> sql.Composed:
    """``UPDATE store_mappings SET <given fields>, updated_at = now() WHERE id = %(id)s RETURNING ...``."""
    sets: list[sql.Composable] = [sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in changes]
    sets.append(sql.SQL("updated_at = now()"))
    return sql.SQL("UPDATE store_mappings SET {} WHERE id = %(id)s RETURNING {}").format(
        sql.SQL(", ").join(sets), sql.SQL(MAPPING_COLUMNS)
    )


def create_mapping(conn: Any, mapping: StoreMappingIn) -> Row | None:
    """Insert a mapping; None when the shop already has one."""
    row: Row | None = conn.execute(INSERT_MAPPING, mapping.model_dump()).fetchone()
    return row


def list_mappings(conn: Any) -> list[Row]:
    rows: list[Row] = conn.execute(LIST_MAPPINGS).fetchall()
    return rows


def find_mapping(conn: Any, key: str) -> Row | None:
    """A mapping by id, shop domain or Hipoink store code."""
    if key.isdigit():
        row: Row | None = conn.execute(GET_MAPPING, (int(key),)).fetchone()
        if row:
            return row
    row = conn.execute(QUERIES["find_mapping"], (key.strip().lower(), key.strip())).fetchone()
    return row


def update_mapping(conn: Any, mapping_id: int, update: StoreMappingUpdate) -> Row | None:
    changes = update.changes()
    if not changes:
        row: Row | None = conn.execute(GET_MAPPING, (mapping_id,)).fetchone()
        return row
    row = conn.execute(update_mapping_query(changes), {**changes, "id": mapping_id}).fetchone()
    return row


# ---------------------------------------------------------------- reads for the dashboard, /metrics and alerts


def queue_by_mapping(conn: Any, now: datetime) -> list[Row]:
    """Per store mapping: items waiting, dead letters, the oldest waiting item's age, the last success."""
    rows: list[Row] = conn.execute(QUERIES["queue_by_mapping"], {"now": now}).fetchall()
    return rows


def state_counts(conn: Any) -> dict[str, int]:
    """Items per queue state, every state of `STATES` present (0 when none)."""
    counts = {r["state"]: int(r["n"]) for r in conn.execute(QUERIES["state_counts"]).fetchall()}
    return {s: counts.get(s, 0) for s in STATES} | counts


def counts_by_store(conn: Any) -> dict[str, dict[str, int]]:
    """Items per Hipoink store and state (every state of `STATES` present)."""
    out: dict[str, dict[str, int]] = {}
    for r in conn.execute(QUERIES["state_counts_by_store"]).fetchall():
        out.setdefault(str(r["store_code"]), dict.fromkeys(STATES, 0))[r["state"]] = int(r["n"])
    return out


def oldest_waiting_age(conn: Any, now: datetime) -> float | None:
    """Seconds since the oldest pending or in-progress item was enqueued; None when none waits."""
    age = conn.execute(QUERIES["oldest_waiting_age"], (now,)).fetchone()["age"]
    return float(age) if age is not None else None


def states_with_age(conn: Any, now: datetime) -> dict[str, Row]:
    """Per state present: its count (``n``) and the age of its oldest item in seconds (``age``)."""
    return {r["state"]: r for r in conn.execute(QUERIES["states_with_age"], (now,)).fetchall()}


def recent_dead_letters(conn: Any) -> list[Row]:
    """The 100 most recently finished dead letters with their product's code and name."""
    rows: list[Row] = conn.execute(QUERIES["recent_dead_letters"]).fetchall()
    return rows


def recent_webhooks(conn: Any) -> list[Row]:
    """The 25 most recently received webhook_inbox rows."""
    rows: list[Row] = conn.execute(QUERIES["recent_webhooks"]).fetchall()
    return rows


def webhook_outcomes(conn: Any) -> list[Row]:
    rows: list[Row] = conn.execute(QUERIES["webhook_outcomes"]).fetchall()
    return rows


def webhook_reasons(conn: Any) -> list[Row]:
    """Refused or redundant deliveries (`WEBHOOK_REJECTED`) grouped by reason, ids folded to ``#``."""
    rows: list[Row] = conn.execute(QUERIES["webhook_reasons"], (list(WEBHOOK_REJECTED),)).fetchall()
    return rows


def webhooks_by_topic(conn: Any, topics: Sequence[str]) -> list[Row]:
    """Deliveries per (topic, outcome, reason kind); a topic not in ``topics`` is counted as ``other``."""
    rows: list[Row] = conn.execute(QUERIES["webhooks_by_topic"], (list(topics),)).fetchall()
    return rows


def synced_per_hour(conn: Any, since: datetime) -> list[Row]:
    """(hour, items synced) for the hours since ``since`` that have any."""
    rows: list[Row] = conn.execute(QUERIES["synced_per_hour"], (since,)).fetchall()
    return rows


def sync_attempts(conn: Any) -> list[Row]:
    """sync_log rows per (store_code, status)."""
    rows: list[Row] = conn.execute(QUERIES["sync_attempts"]).fetchall()
    return rows


def latency_counts(conn: Any, edges: Sequence[float], since: datetime | None) -> tuple[list[int], int, float]:
    """Webhook -> label latencies of synced items since ``since`` (or ever): cumulative counts per edge
    (seconds), the count and the sum of seconds. sync_log.latency_ms = Hipoink's answer - the webhook's
    commit (its acknowledgement)."""
    query = (
        "SELECT count(*) AS n, coalesce(sum(latency_ms), 0) / 1000.0 AS total"
        + "".join(f", count(*) FILTER (WHERE latency_ms <= %(e{i})s) AS b{i}" for i in range(len(edges)))
        + " FROM sync_log WHERE status = 'succeeded' AND latency_ms IS NOT NULL"
        " AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)"
    )
    params: dict[str, Any] = {f"e{i}": edge * 1000 for i, edge in enumerate(edges)} | {"since": since}
    row = conn.execute(query, params).fetchone()
    return [int(row[f"b{i}"]) for i in range(len(edges))], int(row["n"]), float(row["total"])
