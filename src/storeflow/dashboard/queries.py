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
from storeflow.esl import store as esl_store
from storeflow.hallmark import store as hallmark
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


def hallmark_observations(conn: psycopg.Connection[Any]) -> list[Observation]:
    run = hallmark.last_run(conn)
    fresh = hallmark.freshness(conn)
    status, error, at = (run.status, run.last_error, run.started_at) if run else (None, None, None)
    session = hallmark.session_state(conn)
    bad_at = session.invalid_at
    if bad_at and (session.valid_at is None or bad_at > session.valid_at) and (at is None or bad_at >= at):
        status, error, at = "needs_bootstrap", session.invalid_detail, bad_at
    label = f"Hallmark Connect ({fresh.stores} stores)" if fresh.stores else "Hallmark Connect"
    return [
        Observation(
            "hallmark", "hallmark", label,
            last_success_at=hallmark.last_ok_at(conn), last_attempt_at=at, last_status=status, last_error=error,
            freshness=fresh.latest_order_date,
        )
    ]  # fmt: skip


# ---------------------------------------------------------------- ESL


def esl_observations(conn: psycopg.Connection[Any], now: datetime) -> list[Observation]:
    out = []
    for r in esl_store.queue_by_mapping(conn, now):
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


@dataclass
class HallmarkPage:
    runs: list[hallmark.Run] = field(default_factory=list)
    items: dict[str, dict[str, int]] = field(default_factory=dict)
    totals: list[hallmark.StoreMonthTotal] = field(default_factory=list)
    grand: hallmark.OrderTotals = hallmark.NO_ORDERS

    @property
    def months(self) -> list[str]:
        """The most recent months with orders, newest first (at most 12 columns)."""
        return sorted({r.month or "unknown" for r in self.totals}, reverse=True)[:12]

    @property
    def pivot(self) -> list[dict[str, Any]]:
        """One row per store: {store_number, store_name, cells: {month: (orders, total)}, orders, total}."""
        rows: dict[str, dict[str, Any]] = {}
        for r in self.totals:
            number = str(r.store_number or "?")
            row = rows.setdefault(
                number, {"store_number": number, "store_name": r.store_name, "cells": {}, "orders": 0, "total": 0}
            )
            row["cells"][r.month or "unknown"] = (r.orders, r.total)
            row["orders"] += r.orders
            row["total"] += r.total
        return sorted(rows.values(), key=lambda x: (len(x["store_number"]), x["store_number"]))

    @property
    def month_totals(self) -> dict[str, tuple[int, Any]]:
        out: dict[str, tuple[int, Any]] = {}
        for r in self.totals:
            month = r.month or "unknown"
            n, t = out.get(month, (0, 0))
            out[month] = (n + r.orders, t + r.total)
        return out


def hallmark_page(conn: psycopg.Connection[Any]) -> HallmarkPage:
    runs = hallmark.recent_runs(conn, 50)
    return HallmarkPage(
        runs=runs,
        items=hallmark.item_counts(conn, [r.run_id for r in runs]),
        totals=hallmark.store_month_totals(conn),
        grand=hallmark.order_totals(conn),
    )


# ---------------------------------------------------------------- ESL page

# the latency histogram's bucket edges in seconds, counted cumulatively in SQL (Prometheus' shape)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


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
    cumulative, count, total_seconds = esl_store.latency_counts(conn, LATENCY_BUCKETS, since)
    return LatencyHistogram(LATENCY_BUCKETS, cumulative, count, total_seconds)


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
    page.counts = esl_store.state_counts(conn)
    page.oldest_pending_age = esl_store.oldest_waiting_age(conn, now)
    page.latency = latency_histogram(conn, now - timedelta(days=7))
    page.dead = esl_store.recent_dead_letters(conn)
    page.by_store = esl_store.counts_by_store(conn)
    page.webhooks = esl_store.recent_webhooks(conn)
    page.webhook_outcomes = esl_store.webhook_outcomes(conn)
    page.webhook_reasons = esl_store.webhook_reasons(conn)
    return page


def _short(seconds: float) -> str:
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:g}s"


def retry_dead(conn: psycopg.Connection[Any], item_ids: list[int] | None) -> int:
    """Re-enqueue dead letters through the ESL pipeline's own function (wakes the workers too)."""
    return esl_store.retry_dead_letters(conn, item_ids=item_ids)


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
    rows = esl_store.synced_per_hour(conn, now - timedelta(hours=hours))
    if not rows:
        return []
    counts = {r["hour"].astimezone(UTC): int(r["n"]) for r in rows}
    last = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    slots = [last - timedelta(hours=h) for h in range(hours - 1, -1, -1)]
    return [(slot, counts.get(slot, 0)) for slot in slots]
