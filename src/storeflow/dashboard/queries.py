"""Every read the dashboard, /metrics and the alert engine make, as SQL constants with bound parameters.

Every served database is migrated, so every pipeline's tables exist. Functions receive a
connection with dict rows from their caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storeflow.crm import store as crm_store
from storeflow.dashboard.status import Cell, Observation, evaluate
from storeflow.logs import redact_value

if TYPE_CHECKING:
    import psycopg

    from storeflow.settings import Settings

Row = dict[str, Any]


def _all(conn: psycopg.Connection[Any], query: str, params: Any = None) -> list[Row]:
    return list(conn.execute(query.encode(), params).fetchall())


def _one(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Row:
    row = conn.execute(query.encode(), params).fetchone()
    return dict(row) if row else {}


# ---------------------------------------------------------------- CRM


def crm_observations(conn: psycopg.Connection[Any], settings: Settings) -> list[Observation]:
    stores: list[tuple[str, str, str]] = [(s.crm, s.code, s.name) for s in settings.config.crm.stores if s.enabled]
    last = crm_store.latest_ingests(conn)
    ok = crm_store.ingest_successes(conn)
    problem = crm_store.download_problems(conn)
    dl_ok = crm_store.download_successes(conn)
    known = {(crm, code) for crm, code, _ in stores}
    for crm, code in sorted(set(last) | set(dl_ok) | set(problem)):
        if (crm, code) not in known:
            stores.append((crm, code, code))
    out: list[Observation] = []
    for crm, code, name in stores:
        k = (crm, code)
        key, label = f"{crm}_{code}", f"{name} ({crm}_{code})"
        got = dl_ok.get(k, {})
        d_status, d_at, d_error = ("ok", got.get("last_success_at"), None) if got else (None, None, None)
        p = problem.get(k)
        if p and (d_at is None or p["started_at"] > d_at):
            d_status, d_at, d_error = p["status"], p["started_at"], p["error"]
        out.append(
            Observation(
                "crm_download", key, label, crm, code,
                last_success_at=got.get("last_success_at"), last_attempt_at=d_at,
                last_status=_crm_status(d_status), last_error=d_error, freshness=got.get("freshness"),
            )
        )  # fmt: skip
        lr = last.get(k, {})
        out.append(
            Observation(
                "crm_ingest", key, label, crm, code,
                last_success_at=ok.get(k, {}).get("last_success_at"),
                last_attempt_at=lr.get("started_at"), last_status=_crm_status(lr.get("status")),
                last_error=lr.get("error"), freshness=ok.get(k, {}).get("freshness"),
            )
        )  # fmt: skip
    return out


def _crm_status(status: str | None) -> str | None:
    if status is None:
        return None
    if status in {crm_store.INGEST_FAILED, "error"}:
        return "failed"
    if status in {crm_store.NEEDS_BOOTSTRAP, "running"}:
        return status
    return "ok"


# ---------------------------------------------------------------- Hallmark

HALLMARK_LAST_RUN = """
SELECT run_id, kind, status, started_at, finished_at, last_error FROM hallmark_runs ORDER BY started_at DESC LIMIT 1
"""
HALLMARK_LAST_OK = "SELECT max(finished_at) AS at FROM hallmark_runs WHERE status = 'ok'"
HALLMARK_FRESHNESS = "SELECT max(order_creation_date) AS at, count(DISTINCT store_number) AS stores FROM orders"
SESSION_INVALID_FOR = """
SELECT checked_at, detail FROM session_checks WHERE pipeline = %s AND NOT valid ORDER BY checked_at DESC LIMIT 1
"""
SESSION_VALID_SINCE = "SELECT max(checked_at) AS at FROM session_checks WHERE pipeline = %s AND valid"


def hallmark_observations(conn: psycopg.Connection[Any]) -> list[Observation]:
    run = _one(conn, HALLMARK_LAST_RUN)
    last_ok = _one(conn, HALLMARK_LAST_OK).get("at")
    fresh = _one(conn, HALLMARK_FRESHNESS)
    status, error, at = run.get("status"), run.get("last_error"), run.get("started_at")
    bad = _one(conn, SESSION_INVALID_FOR, ("hallmark",))
    good = _one(conn, SESSION_VALID_SINCE, ("hallmark",)).get("at")
    if bad and (good is None or bad["checked_at"] > good) and (at is None or bad["checked_at"] >= at):
        status, error, at = "needs_bootstrap", bad.get("detail"), bad["checked_at"]
    stores = fresh.get("stores") or 0
    label = f"Hallmark Connect ({stores} stores)" if stores else "Hallmark Connect"
    return [
        Observation(
            "hallmark", "hallmark", label,
            last_success_at=last_ok, last_attempt_at=at, last_status=status, last_error=error,
            freshness=fresh.get("at"),
        )
    ]  # fmt: skip


# ---------------------------------------------------------------- ESL

# dead letters are `failed` (permanent error) and `dead` (out of attempts), as `storeflow esl retry` sees them
ESL_WAITING = ("pending", "in_progress")
ESL_DEAD_STATES = ("failed", "dead")
ESL_PER_STORE = """
SELECT m.id AS mapping_id, m.hipoink_store_code AS code, m.source_store_id AS shop,
       count(q.id) FILTER (WHERE q.state IN ('pending', 'in_progress')) AS pending,
       count(q.id) FILTER (WHERE q.state IN ('failed', 'dead')) AS dead,
       extract(epoch FROM %(now)s - min(q.enqueued_at) FILTER (WHERE q.state IN ('pending', 'in_progress')))
           AS oldest_pending_age,
       max(q.finished_at) FILTER (WHERE q.state = 'succeeded') AS last_success_at
FROM store_mappings m LEFT JOIN sync_queue q ON q.store_mapping_id = m.id
WHERE m.is_active OR q.id IS NOT NULL
GROUP BY m.id, m.hipoink_store_code, m.source_store_id
ORDER BY m.hipoink_store_code, m.source_store_id
"""


def esl_observations(conn: psycopg.Connection[Any], now: datetime) -> list[Observation]:
    out = []
    for r in _all(conn, ESL_PER_STORE, {"now": now}):
        code = str(r["code"])
        out.append(
            Observation(
                "esl", f"esl_{code}", f"{r['shop']} → {code}", code=code,
                last_success_at=r["last_success_at"], pending=int(r["pending"] or 0), dead=int(r["dead"] or 0),
                oldest_pending_age=float(r["oldest_pending_age"]) if r["oldest_pending_age"] is not None else None,
            )
        )  # fmt: skip
    return out


# ---------------------------------------------------------------- overview


def overview_cells(conn: psycopg.Connection[Any], settings: Settings, now: datetime | None = None) -> list[Cell]:
    """Every store x pipeline cell, evaluated by the status policy."""
    now = now or datetime.now(UTC)
    cfg = settings.config.dashboard
    observations = [
        *hallmark_observations(conn),
        *crm_observations(conn, settings),
        *esl_observations(conn, now),
    ]
    return [evaluate(o, now, cfg.stale_after_hours, cfg.queue_age_alert_seconds) for o in observations]


INVALID_SESSIONS = """
SELECT session_key, coalesce(detail, '') AS detail FROM session_checks WHERE NOT valid ORDER BY session_key
"""


def invalid_sessions(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    return [(r["session_key"], r["detail"]) for r in _all(conn, INVALID_SESSIONS)]


RECENT_ALERTS = """
SELECT condition_key, action, sent_at, payload->>'title' AS title, outcome
FROM dashboard_alert_log ORDER BY sent_at DESC, id DESC LIMIT %s
"""


def recent_alerts(conn: psycopg.Connection[Any], limit: int = 10) -> list[Row]:
    # outcomes are redacted when stored; rows stored before that was so are redacted here
    return [{**r, "outcome": redact_value(r["outcome"])} for r in _all(conn, RECENT_ALERTS, (limit,))]


# ---------------------------------------------------------------- CRM page


@dataclass
class CrmFilters:
    store: str = ""  # "td_a668"
    status: str = ""
    date_from: date | None = None
    date_to: date | None = None

    def where(self) -> crm_store.RecordFilter:
        crm, _, code = self.store.partition("_")
        return crm_store.RecordFilter(crm or None, code or None, self.status or None, self.date_from, self.date_to)


@dataclass
class CrmPage:
    ledger: list[Row] = field(default_factory=list)
    ledger_totals: Row = field(default_factory=dict)
    audit: list[Row] = field(default_factory=list)
    audit_totals: Row = field(default_factory=dict)
    audit_by_status: list[Row] = field(default_factory=list)
    failures: list[Row] = field(default_factory=list)
    fact_rows: dict[str, int] = field(default_factory=dict)
    statuses: list[str] = field(default_factory=list)
    stores: list[tuple[str, str]] = field(default_factory=list)
    success_statuses: tuple[str, ...] = crm_store.INGEST_SUCCESS
    problem_statuses: tuple[str, ...] = crm_store.INGEST_PROBLEMS


def crm_page(conn: psycopg.Connection[Any], settings: Settings, filters: CrmFilters) -> CrmPage:
    where = filters.where()
    page = CrmPage(
        ledger=crm_store.ledger_rows(conn, where),
        ledger_totals=crm_store.ledger_totals(conn, where),
        audit=crm_store.audit_rows(conn, where),
        audit_totals=crm_store.audit_totals(conn, where),
        audit_by_status=crm_store.audit_by_status(conn, where),
        failures=crm_store.audit_failures(conn, where),
        fact_rows=crm_store.fact_rows(conn),
        statuses=crm_store.statuses_seen(conn),
        stores=[(s.key, f"{s.name} ({s.key})") for s in settings.config.crm.stores],
    )
    known = {k for k, _ in page.stores}
    seen = [f"{crm}_{code}" for crm, code in crm_store.stores_seen(conn)]
    page.stores += [(key, key) for key in seen if key not in known]
    return page


# ---------------------------------------------------------------- Hallmark page

HALLMARK_RUNS = """
SELECT run_id, kind, params, started_at, finished_at, status, downloaded, skipped, failed, last_error
FROM hallmark_runs ORDER BY started_at DESC LIMIT 50
"""
HALLMARK_ITEMS = """
SELECT run_id, status, count(*) AS n FROM hallmark_run_items
WHERE run_id = ANY(%s) GROUP BY run_id, status ORDER BY run_id, status
"""
HALLMARK_TOTALS = """
SELECT store_number, max(store_name) AS store_name,
       to_char(date_trunc('month', order_creation_date), 'YYYY-MM') AS month,
       count(*) AS orders, coalesce(sum(order_total), 0) AS total
FROM orders GROUP BY store_number, date_trunc('month', order_creation_date)
ORDER BY month DESC, store_number
LIMIT 5000
"""
HALLMARK_GRAND = "SELECT count(*) AS orders, coalesce(sum(order_total), 0) AS total FROM orders"


@dataclass
class HallmarkPage:
    runs: list[Row] = field(default_factory=list)
    items: dict[str, dict[str, int]] = field(default_factory=dict)
    totals: list[Row] = field(default_factory=list)
    grand: Row = field(default_factory=dict)

    @property
    def months(self) -> list[str]:
        """The most recent months with orders, newest first (at most 12 columns)."""
        return sorted({r["month"] or "unknown" for r in self.totals}, reverse=True)[:12]

    @property
    def pivot(self) -> list[dict[str, Any]]:
        """One row per store: {store_number, store_name, cells: {month: (orders, total)}, orders, total}."""
        rows: dict[str, dict[str, Any]] = {}
        for r in self.totals:
            number = str(r["store_number"] or "?")
            row = rows.setdefault(
                number, {"store_number": number, "store_name": r["store_name"], "cells": {}, "orders": 0, "total": 0}
            )
            row["cells"][r["month"] or "unknown"] = (int(r["orders"]), r["total"])
            row["orders"] += int(r["orders"])
            row["total"] += r["total"]
        return sorted(rows.values(), key=lambda x: (len(x["store_number"]), x["store_number"]))

    @property
    def month_totals(self) -> dict[str, tuple[int, Any]]:
        out: dict[str, tuple[int, Any]] = {}
        for r in self.totals:
            month = r["month"] or "unknown"
            n, t = out.get(month, (0, 0))
            out[month] = (n + int(r["orders"]), t + r["total"])
        return out


def hallmark_page(conn: psycopg.Connection[Any]) -> HallmarkPage:
    page = HallmarkPage(runs=_all(conn, HALLMARK_RUNS))
    if page.runs:
        for r in _all(conn, HALLMARK_ITEMS, ([r["run_id"] for r in page.runs],)):
            page.items.setdefault(str(r["run_id"]), {})[r["status"]] = int(r["n"])
    page.totals = _all(conn, HALLMARK_TOTALS)
    page.grand = _one(conn, HALLMARK_GRAND)
    return page


# ---------------------------------------------------------------- ESL page

ESL_STATES = ("pending", "in_progress", "succeeded", "failed", "dead")
ESL_COUNTS = "SELECT state, count(*) AS n FROM sync_queue GROUP BY state"
ESL_OLDEST = """
SELECT extract(epoch FROM %s - min(enqueued_at)) AS age FROM sync_queue WHERE state IN ('pending', 'in_progress')
"""
ESL_DEAD = """
SELECT q.id, q.store_code AS store, q.state, q.operation, p.pc, p.pn, q.attempts, q.last_error, q.finished_at
FROM sync_queue q LEFT JOIN products p ON p.id = q.product_id
WHERE q.state IN ('failed', 'dead') ORDER BY q.finished_at DESC NULLS LAST, q.id DESC LIMIT 100
"""
ESL_WEBHOOKS = """
SELECT id, shop_domain, topic, event_id, received_at, outcome, reason, items_enqueued FROM webhook_inbox
ORDER BY received_at DESC, id DESC LIMIT 25
"""
ESL_WEBHOOK_OUTCOMES = "SELECT outcome, count(*) AS n FROM webhook_inbox GROUP BY outcome ORDER BY outcome"
# reasons name ids and timestamps ("already received as inbox #79"): grouped with digits folded to "#"
REASON_KIND = r"regexp_replace(coalesce(reason, ''), '#?[0-9][0-9:T.+-]*', '#', 'g')"
ESL_WEBHOOK_REASONS = f"""
SELECT outcome, {REASON_KIND} AS reason, count(*) AS n, max(received_at) AS last_at, max(reason) AS example
FROM webhook_inbox WHERE outcome = ANY(%s) GROUP BY 1, 2 ORDER BY n DESC, last_at DESC LIMIT 20
"""
ESL_BY_STORE = """
SELECT store_code, state, count(*) AS n FROM sync_queue GROUP BY 1, 2 ORDER BY 1, 2
"""
ESL_THROUGHPUT = """
SELECT date_trunc('hour', created_at) AS hour, count(*) AS n FROM sync_log
WHERE status = 'succeeded' AND created_at >= %s GROUP BY 1 ORDER BY 1
"""
# webhook outcomes that put nothing on the queue because the delivery was refused or redundant
WEBHOOK_REJECTED = ("ignored", "duplicate", "invalid", "stale", "unmatched")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# sync_log.latency_ms = Hipoink's answer - the webhook's commit (its acknowledgement); counted in SQL,
# cumulative per bucket edge (Prometheus' shape), over all time or since a moment
LATENCY_HISTOGRAM = (
    "SELECT count(*) AS n, coalesce(sum(latency_ms), 0) / 1000.0 AS total"
    + "".join(f", count(*) FILTER (WHERE latency_ms <= %(e{i})s) AS b{i}" for i in range(len(LATENCY_BUCKETS)))
    + " FROM sync_log WHERE status = 'succeeded' AND latency_ms IS NOT NULL"
    " AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s::timestamptz)"
)


@dataclass
class LatencyHistogram:
    """Cumulative counts per edge (seconds), the total count and the sum of seconds."""

    edges: tuple[float, ...]
    cumulative: list[int]
    count: int
    total_seconds: float

    def bars(self) -> list[tuple[str, int]]:
        """(label, items in this bucket only) for a bar chart, with an overflow bucket."""
        counts = [c - p for c, p in zip([*self.cumulative, self.count], [0, *self.cumulative], strict=True)]
        labels = [f"≤{_short(e)}" for e in self.edges] + [f">{_short(self.edges[-1])}"]
        return list(zip(labels, counts, strict=True))


def latency_histogram(conn: psycopg.Connection[Any], since: datetime | None) -> LatencyHistogram:
    """Webhook -> label latencies of synced items (ESL sync_log), since ``since`` or ever."""
    params: dict[str, Any] = {f"e{i}": edge * 1000 for i, edge in enumerate(LATENCY_BUCKETS)} | {"since": since}
    row = _one(conn, LATENCY_HISTOGRAM, params)
    cumulative = [int(row[f"b{i}"]) for i in range(len(LATENCY_BUCKETS))]
    return LatencyHistogram(LATENCY_BUCKETS, cumulative, int(row["n"]), float(row["total"]))


@dataclass
class EslPage:
    counts: dict[str, int] = field(default_factory=dict)
    oldest_pending_age: float | None = None
    latency: LatencyHistogram | None = None
    dead: list[Row] = field(default_factory=list)
    webhooks: list[Row] = field(default_factory=list)
    webhook_outcomes: list[Row] = field(default_factory=list)
    webhook_reasons: list[Row] = field(default_factory=list)
    by_store: dict[str, dict[str, int]] = field(default_factory=dict)


def esl_page(conn: psycopg.Connection[Any], now: datetime | None = None) -> EslPage:
    now = now or datetime.now(UTC)
    page = EslPage()
    counts = {r["state"]: int(r["n"]) for r in _all(conn, ESL_COUNTS)}
    page.counts = {s: counts.get(s, 0) for s in ESL_STATES} | counts
    age = _one(conn, ESL_OLDEST, (now,)).get("age")
    page.oldest_pending_age = float(age) if age is not None else None
    page.latency = latency_histogram(conn, now - timedelta(days=7))
    page.dead = _all(conn, ESL_DEAD)
    for r in _all(conn, ESL_BY_STORE):
        page.by_store.setdefault(str(r["store_code"]), dict.fromkeys(ESL_STATES, 0))[r["state"]] = int(r["n"])
    page.webhooks = _all(conn, ESL_WEBHOOKS)
    page.webhook_outcomes = _all(conn, ESL_WEBHOOK_OUTCOMES)
    page.webhook_reasons = _all(conn, ESL_WEBHOOK_REASONS, (list(WEBHOOK_REJECTED),))
    return page


def _short(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:g}s"


def retry_dead(conn: psycopg.Connection[Any], item_ids: list[int] | None) -> int:
    """Re-enqueue dead letters through the ESL pipeline's own function (wakes the workers too)."""
    from storeflow.esl.queue import retry_dead_letters

    count: int = retry_dead_letters(conn, item_ids=item_ids)
    return count


# ---------------------------------------------------------------- sessions

SESSION_CHECKS = """
SELECT session_key, pipeline, store, path, saved_at, checked_at, valid, detail FROM session_checks
"""


@dataclass
class SessionRow:
    key: str
    pipeline: str
    path: str
    exists: bool
    age_seconds: float | None
    checked_at: datetime | None
    valid: bool | None
    detail: str


def sessions(conn: psycopg.Connection[Any], settings: Settings) -> list[SessionRow]:
    """Every stored session file (Hallmark SESSION_FILE, CRM profiles) with its last validity check."""
    from storeflow.browser import SessionVault, vault_for_file

    checks: dict[str, Row] = {}
    for r in _all(conn, SESSION_CHECKS):
        checks[r["session_key"]] = r
        checks.setdefault(str(Path(r["path"]).expanduser()), r)
    found: list[tuple[str, str, Path, float | None]] = []
    vault, key = vault_for_file(settings.SESSION_FILE.expanduser())
    found.append(("hallmark", "hallmark", vault.path(key), vault.age_seconds(key)))
    profiles = SessionVault(settings.config.crm.profiles_dir.expanduser())
    crm_keys = set(profiles.keys()) | {s.key for s in settings.config.crm.stores}
    for k in sorted(crm_keys):
        found.append((k, "crm", profiles.path(k), profiles.age_seconds(k)))
    rows: list[SessionRow] = []
    used: set[str] = set()
    for k, pipeline, path, age in found:
        check = checks.get(k) or checks.get(str(path)) or (checks.get("hallmark_session") if k == "hallmark" else None)
        if check:
            used.add(check["session_key"])
        rows.append(
            SessionRow(
                k, pipeline, str(path), path.is_file(), age,
                check["checked_at"] if check else None, check["valid"] if check else None,
                (check.get("detail") or "") if check else "",
            )
        )  # fmt: skip
    for r in checks.values():
        if r["session_key"] not in used:
            used.add(r["session_key"])
            path = Path(r["path"]).expanduser()
            rows.append(
                SessionRow(
                    r["session_key"], r["pipeline"], str(path), path.is_file(), None,
                    r["checked_at"], r["valid"], r.get("detail") or "",
                )
            )  # fmt: skip
    return rows


# ---------------------------------------------------------------- charts

SALES_LAST_DAY = {
    "fact_td_orders": "SELECT max(order_date) AS d FROM fact_td_orders",
    "fact_uc_gst": "SELECT max(invoice_date) AS d FROM fact_uc_gst",
}
SALES_DAILY = {
    "fact_td_orders": """
SELECT 'td_' || store_code AS store, order_date AS day, sum(net_amount) AS amount FROM fact_td_orders
WHERE order_date > %s GROUP BY 1, 2 ORDER BY 1, 2
""",
    "fact_uc_gst": """
SELECT 'uc_' || store_code AS store, invoice_date AS day, sum(final_amount) AS amount FROM fact_uc_gst
WHERE invoice_date > %s GROUP BY 1, 2 ORDER BY 1, 2
""",
}


def daily_sales(conn: psycopg.Connection[Any], days: int = 30) -> dict[str, list[tuple[date, float]]]:
    """Net sales per store (``td_a668``) and day over the last ``days`` days that have data (CRM fact tables)."""
    last_days = [d for t in SALES_DAILY if (d := _one(conn, SALES_LAST_DAY[t]).get("d")) is not None]
    if not last_days:
        return {}
    since = max(last_days) - timedelta(days=days)
    out: dict[str, list[tuple[date, float]]] = {}
    for table in SALES_DAILY:
        for r in _all(conn, SALES_DAILY[table], (since,)):
            out.setdefault(r["store"], []).append((r["day"], float(r["amount"] or 0)))
    return out


def esl_throughput(conn: psycopg.Connection[Any], now: datetime, hours: int = 24) -> list[tuple[datetime, int]]:
    """Labels synced per hour over the last ``hours`` hours, every hour present (0 when none)."""
    rows = _all(conn, ESL_THROUGHPUT, (now - timedelta(hours=hours),))
    if not rows:
        return []
    counts = {r["hour"].astimezone(UTC): int(r["n"]) for r in rows}
    last = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    slots = [last - timedelta(hours=h) for h in range(hours - 1, -1, -1)]
    return [(slot, counts.get(slot, 0)) for slot in slots]
