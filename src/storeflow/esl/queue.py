"""The durable sync queue in PostgreSQL: claim, lease, finish, dead letters, stats, resync.

States are explicit text: ``pending`` -> ``in_progress`` -> ``succeeded`` | ``failed`` (permanent
error) | ``dead`` (retry budget spent). "Dead letters" are the items in ``failed`` or ``dead``.
Claims use ``FOR UPDATE SKIP LOCKED`` and set a lease (``locked_until``); an item whose worker
vanished returns to ``pending`` once its lease has passed. Functions receive their connection
from the caller; the sync ones leave the transaction to the caller.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storeflow.logs import redact_error

CHANNEL = "esl_sync"
STATES = ("pending", "in_progress", "succeeded", "failed", "dead")
DEAD_STATES = ("failed", "dead")
# one claim at a time across all workers, so "no other worker holds this product" is exact
CLAIM_LOCK_KEY = int(hashlib.sha1(b"storeflow-esl-claim").hexdigest()[:15], 16)

# The lookups are written as `= ANY(ARRAY(...))` and LATERAL ... LIMIT 1 on purpose: as joins, the planner
# hashes the whole queue and products tables on every claim once the backlog is large.
CLAIM = """
WITH claimed AS (
    UPDATE sync_queue q
       SET state = 'in_progress', attempts = q.attempts + 1, locked_by = %(worker)s,
           locked_until = now() + make_interval(secs => %(lease)s), claimed_at = now()
     WHERE q.id = ANY(ARRAY(
        SELECT c.id FROM sync_queue c
         WHERE c.state = 'pending' AND c.run_after <= now()
           AND NOT EXISTS (SELECT 1 FROM sync_queue b WHERE b.product_id = c.product_id AND b.state = 'in_progress')
         ORDER BY c.run_after, c.id
         LIMIT %(limit)s
           FOR UPDATE SKIP LOCKED))
    RETURNING q.id, q.store_mapping_id, q.store_code, q.product_id, q.operation, q.attempts, q.inbox_id,
              q.enqueued_at, q.answered_errors, extract(epoch FROM (now() - q.retrying_since))::float8 AS retrying_for
)
SELECT c.*, p.pc, p.pn, p.pp, p.pi, p.pim, p.stock, p.product_status, p.validation_errors,
       h.sent_pc, m.stock_field, m.mapping_active
  FROM claimed c
  CROSS JOIN LATERAL (SELECT x.pc, x.pn, x.pp, x.pi, x.pim, x.stock, x.status AS product_status, x.validation_errors
                        FROM products x WHERE x.id = c.product_id LIMIT 1) p
  LEFT JOIN LATERAL (SELECT y.pc AS sent_pc FROM hipoink_products y WHERE y.product_id = c.product_id LIMIT 1) h
    ON true
  LEFT JOIN LATERAL (SELECT z.stock_field, z.is_active AS mapping_active FROM store_mappings z
                      WHERE z.id = c.store_mapping_id LIMIT 1) m ON true
 ORDER BY c.id
"""

# Items whose worker stopped renewing their lease; the caller decides each one (decide_retry) and
# hands the decisions to RETURN_EXPIRED in the same transaction.
EXPIRED = """
SELECT q.id, q.inbox_id, q.store_code, q.product_id, q.operation, q.attempts, q.answered_errors, q.locked_by,
       extract(epoch FROM (now() - q.retrying_since))::float8 AS retrying_for
  FROM sync_queue q
 WHERE q.state = 'in_progress' AND q.locked_until < now()
 ORDER BY q.id
 LIMIT 5000
   FOR UPDATE SKIP LOCKED
"""

RETURN_EXPIRED = """
WITH r AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb)
        AS r(id bigint, state text, error text, status text, inbox_id bigint, store_code text, product_id bigint,
             operation text, attempt int, detail text)
), moved AS (
    UPDATE sync_queue q
       SET state = r.state, run_after = now(), locked_by = NULL, locked_until = NULL, last_error = r.error,
           retrying_since = coalesce(q.retrying_since, now()),
           finished_at = CASE WHEN r.state = 'pending' THEN NULL ELSE now() END
      FROM r
     WHERE q.id = r.id AND q.state = 'in_progress' AND q.locked_until < now()
    RETURNING q.id
)
INSERT INTO sync_log (queue_item_id, inbox_id, store_code, product_id, operation, attempt, status, error, worker,
                      detail)
SELECT r.id, r.inbox_id, r.store_code, r.product_id, r.operation, r.attempt, r.status, r.error, %(worker)s, r.detail
  FROM r JOIN moved m ON m.id = r.id
RETURNING queue_item_id
"""

HEARTBEAT = """
UPDATE sync_queue SET locked_until = now() + make_interval(secs => %(lease)s)
 WHERE state = 'in_progress' AND locked_by = %(worker)s AND id = ANY(%(ids)s)
"""

NEXT_DUE = """
SELECT extract(epoch FROM (min(run_after) - now()))::float8 AS wait,
       (SELECT count(*) FROM sync_queue WHERE state = 'in_progress') AS in_progress
  FROM sync_queue WHERE state = 'pending'
"""

# Per-item results travel as one jsonb document: psycopg dumps long text arrays element by element
# in Python, which costs more than the statements themselves at a few thousand items per second.
# One statement, so that running it again after a commit whose outcome was lost changes nothing:
# only items this worker still holds in progress move, and only their log rows and Hipoink records
# are written. Items it no longer holds (the lease passed and another worker took them back) are
# sent again by whoever holds them now; Hipoink's create_multiple is an upsert by code.
FINISH = """
WITH r AS (
    SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb)
        AS r(id bigint, state text, delay float8, error text, answered int, inbox_id bigint, store_code text,
             product_id bigint, pc text, operation text, attempt int, status text, http_status int,
             error_code int, detail text, enqueued_at timestamptz, sent_at timestamptz, acked_at timestamptz,
             payload jsonb, removed boolean)
), done AS (
    UPDATE sync_queue q
       SET state = r.state,
           run_after = CASE WHEN r.state = 'pending' THEN now() + make_interval(secs => r.delay) ELSE q.run_after END,
           last_error = r.error,
           answered_errors = r.answered,
           retrying_since = CASE WHEN r.state = 'pending' THEN coalesce(q.retrying_since, now())
                                 ELSE q.retrying_since END,
           finished_at = CASE WHEN r.state = 'pending' THEN NULL ELSE now() END,
           locked_by = NULL, locked_until = NULL
      FROM r
     WHERE q.id = r.id AND q.state = 'in_progress' AND q.locked_by = %(worker)s
    RETURNING q.id
), held AS (
    SELECT r.* FROM r JOIN done d ON d.id = r.id
), logged AS (
    INSERT INTO sync_log (queue_item_id, inbox_id, store_code, product_id, product_code, operation, attempt,
                          status, error, http_status, error_code, worker, detail, enqueued_at, sent_at, acked_at,
                          latency_ms)
    SELECT h.id, h.inbox_id, h.store_code, h.product_id, h.pc, h.operation, h.attempt, h.status, h.error,
           h.http_status, h.error_code, %(worker)s, h.detail, h.enqueued_at, h.sent_at, h.acked_at,
           extract(epoch FROM (h.acked_at - h.enqueued_at)) * 1000
      FROM held h
    RETURNING 1
), remembered AS (
    INSERT INTO hipoink_products (product_id, store_code, pc, payload, synced_at)
    SELECT h.product_id, h.store_code, h.payload->>'pc', h.payload, now()
      FROM held h WHERE h.payload IS NOT NULL AND h.status = 'succeeded'
    ON CONFLICT (product_id) DO UPDATE SET store_code = EXCLUDED.store_code, pc = EXCLUDED.pc,
           payload = EXCLUDED.payload, synced_at = EXCLUDED.synced_at
    RETURNING 1
), forgotten AS (
    DELETE FROM hipoink_products p USING held h WHERE h.removed AND p.product_id = h.product_id
    RETURNING 1
)
SELECT (SELECT count(*) FROM done) AS finished, (SELECT count(*) FROM logged) AS logged,
       (SELECT count(*) FROM remembered) AS remembered, (SELECT count(*) FROM forgotten) AS forgotten
"""


@dataclass
class ItemResult:
    """What happened to one claimed queue item in one attempt."""

    item: dict[str, Any]
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
            "id": r.item["id"],
            "state": r.state,
            "delay": r.delay,
            "error": redact_error(r.error),
            "answered": r.answered if r.answered is not None else r.item.get("answered_errors", 0),
            "inbox_id": r.item.get("inbox_id"),
            "store_code": r.item["store_code"],
            "product_id": r.item["product_id"],
            "pc": r.pc or r.item.get("pc") or r.item.get("sent_pc"),
            "operation": r.item.get("operation"),
            "attempt": r.item.get("attempts", 0),
            "status": r.log_status,
            "http_status": r.http_status,
            "error_code": r.error_code,
            "detail": r.detail,
            "enqueued_at": _iso(r.item.get("enqueued_at")),
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


# ---------------------------------------------------------------- operator functions (sync)


def queue_stats(conn: Any) -> dict[str, Any]:
    """Counts by state (overall and per store), oldest pending age in seconds, last errors, inbox outcomes."""
    rows = conn.execute("SELECT store_code, state, count(*) AS n FROM sync_queue GROUP BY 1, 2").fetchall()
    counts = dict.fromkeys(STATES, 0)
    by_store: dict[str, dict[str, int]] = {}
    for row in rows:
        store, state, n = row["store_code"], row["state"], row["n"]
        counts[state] = counts.get(state, 0) + n
        by_store.setdefault(store, dict.fromkeys(STATES, 0))[state] = n
    oldest = conn.execute(
        "SELECT extract(epoch FROM (now() - min(enqueued_at)))::float8 AS age,"
        " count(*) FILTER (WHERE run_after <= now()) AS due FROM sync_queue WHERE state = 'pending'"
    ).fetchone()
    age, due = oldest["age"], oldest["due"]
    errors = conn.execute(
        "SELECT queue_item_id, store_code, product_code, attempt, status, error, created_at FROM sync_log"
        " WHERE error IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT 10"
    ).fetchall()
    inbox = conn.execute(
        "SELECT outcome, count(*) AS n FROM webhook_inbox WHERE received_at > now() - interval '24 hours'"
        " GROUP BY 1 ORDER BY 1"
    ).fetchall()
    latency = conn.execute(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,"
        " percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99, count(*) AS n FROM sync_log"
        " WHERE status = 'succeeded' AND latency_ms IS NOT NULL AND created_at > now() - interval '1 hour'"
    ).fetchone()
    p50, p99, n_lat = latency["p50"], latency["p99"], latency["n"]
    return {
        "counts": counts,
        "by_store": by_store,
        "due_pending": due or 0,
        "oldest_pending_age_seconds": round(age, 3) if age is not None else None,
        "dead_letters": counts["failed"] + counts["dead"],
        "last_errors": [dict(r) for r in errors],
        "inbox_last_24h": {r["outcome"]: r["n"] for r in inbox},
        "latency_ms_last_hour": {"p50": p50, "p99": p99, "count": n_lat},
    }


def retry_dead_letters(conn: Any, item_ids: list[int] | None = None, store_code: str | None = None) -> int:
    """Re-enqueue dead letters (``failed`` and ``dead`` items), optionally only some ids or one store.

    They get a full set of attempts again; the workers are woken. Returns how many were re-enqueued.
    """
    row = conn.execute(
        """
        WITH again AS (
            UPDATE sync_queue
               SET state = 'pending', attempts = 0, run_after = now(), locked_by = NULL, locked_until = NULL,
                   finished_at = NULL, reason = 'retry', answered_errors = 0, retrying_since = NULL
             WHERE state IN ('failed', 'dead')
               AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
               AND (%(store)s::text IS NULL OR store_code = %(store)s::text)
            RETURNING id, store_code
        ), woken AS (
            SELECT pg_notify(%(channel)s, s.store_code) FROM (SELECT DISTINCT store_code FROM again) s
        )
        SELECT (SELECT count(*) FROM again) AS n, (SELECT count(*) FROM woken) AS stores
        """,
        {"ids": item_ids, "store": store_code, "channel": CHANNEL},
    ).fetchone()
    count: int = row["n"]
    return count


def dead_letters(conn: Any, store_code: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest dead letters with their product code and last error."""
    rows = conn.execute(
        """
        SELECT q.id, q.store_code, q.state, q.attempts, q.operation, p.pc, q.last_error, q.finished_at
          FROM sync_queue q JOIN products p ON p.id = q.product_id
         WHERE q.state IN ('failed', 'dead') AND (%(store)s::text IS NULL OR q.store_code = %(store)s::text)
         ORDER BY q.id DESC LIMIT %(limit)s
        """,
        {"store": store_code, "limit": limit},
    ).fetchall()
    return [dict(r) for r in rows]


def enqueue_resync(conn: Any, store_code: str) -> dict[str, int]:
    """Re-send every known product of a Hipoink store (Shopify's advice: reconcile periodically).

    Valid products of the store's active mappings are enqueued as upserts; deleted products that
    Hipoink still holds are enqueued as deletes.
    """
    row = conn.execute(
        """
        WITH up AS (
            INSERT INTO sync_queue (store_mapping_id, store_code, product_id, operation, reason)
            SELECT m.id, m.hipoink_store_code, p.id, 'upsert', 'resync'
              FROM products p JOIN store_mappings m ON m.id = p.store_mapping_id
             WHERE m.hipoink_store_code = %(store)s AND m.is_active AND p.status = 'valid'
            RETURNING 1
        ), gone AS (
            INSERT INTO sync_queue (store_mapping_id, store_code, product_id, operation, reason)
            SELECT m.id, m.hipoink_store_code, p.id, 'delete', 'resync'
              FROM products p JOIN store_mappings m ON m.id = p.store_mapping_id
              JOIN hipoink_products h ON h.product_id = p.id
             WHERE m.hipoink_store_code = %(store)s AND m.is_active AND p.status = 'deleted'
            RETURNING 1
        ), woken AS (SELECT pg_notify(%(channel)s, %(store)s))
        SELECT (SELECT count(*) FROM up) AS upserts, (SELECT count(*) FROM gone) AS deletes,
               (SELECT count(*) FROM woken) AS woken,
               (SELECT count(*) FROM products p JOIN store_mappings m ON m.id = p.store_mapping_id
                 WHERE m.hipoink_store_code = %(store)s AND p.status = 'invalid') AS invalid
        """,
        {"store": store_code, "channel": CHANNEL},
    ).fetchone()
    return {"upserts": row["upserts"], "deletes": row["deletes"], "invalid_not_sent": row["invalid"]}
