"""A Prometheus collector that reads the database at scrape time.

Counters are totals over what the tables hold (so they survive restarts and
agree between processes); every served database is migrated, so each pipeline's
tables exist. `storeflow_up` says whether the database answered.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from storeflow.dashboard import queries
from storeflow.dashboard.status import STATUSES
from storeflow.esl import store as esl_store
from storeflow.esl.transform import TOPICS
from storeflow.jobs import names as job_names
from storeflow.jobs import queries as job_queries
from storeflow.logs import get_logger

if TYPE_CHECKING:
    import psycopg

    from storeflow.db.connect import Database
    from storeflow.settings import Settings

log = get_logger("web")

# reason kinds, not raw reasons (those carry ids): one label value per kind of refusal. The topic is
# a header anyone can set: a topic we do not handle is counted as `other` (as is any reason kind
# that carries a header value; see `reason_label`), so a sender cannot mint label values.
OTHER = "other"
# reasons that name a value from a header (after esl.store folded the digits): the prefix is the kind
_HEADER_REASONS = ("no active store mapping for shop", "unsupported topic")
# a label value is our own wording: letters, digits folded to #, light punctuation, nothing quoted
_REASON_LABEL = re.compile(r"^[A-Za-z #;:,()/_.+-]{1,120}$")
DOWNLOADS = """
SELECT crm, store, status, count(*) AS n, coalesce(sum(size), 0) AS bytes FROM download_ledger GROUP BY 1, 2, 3
"""
INGESTS = """
SELECT crm, store, status, count(*) AS n,
       coalesce(sum(inserted_rows), 0) AS inserted, coalesce(sum(updated_rows), 0) AS updated
FROM ingest_audit GROUP BY 1, 2, 3
"""
HALLMARK_RUNS = """
SELECT kind, status, count(*) AS n, coalesce(sum(downloaded), 0) AS downloaded,
       coalesce(sum(skipped), 0) AS skipped, coalesce(sum(failed), 0) AS failed
FROM hallmark_runs GROUP BY 1, 2
"""
HALLMARK_ORDERS = "SELECT count(*) AS n FROM orders"
# Pipelines record request counts in pipeline_runs.summary under these keys (when they record them).
PORTAL_COUNTERS = {
    "portal_requests": ("storeflow_portal_requests_total", "Requests made to vendor portals"),
    "rate_limited": ("storeflow_portal_rate_limited_total", "HTTP 429 answers from vendor portals"),
    "relogins": ("storeflow_portal_relogins_total", "Re-logins after an expired session mid-run"),
}
PORTAL = """
SELECT pipeline, key, sum((summary->>key)::numeric) AS n
FROM pipeline_runs, unnest(%s::text[]) AS key
WHERE jsonb_typeof(summary->key) = 'number'
GROUP BY 1, 2
"""
ALERTS_ACTIVE = "SELECT kind, count(*) FILTER (WHERE active) AS n FROM dashboard_alert_state GROUP BY kind"
PIPELINE_RUNS = "SELECT pipeline, status, count(*) AS n FROM pipeline_runs GROUP BY 1, 2"


class DatabaseCollector(Collector):
    """Everything /metrics exports; one database connection per scrape."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("storeflow_up", "1 when the database answered the scrape")
        try:
            with self.db.pool.connection() as conn:
                metrics = list(self._collect(conn))
        except Exception as exc:  # a scrape must still answer, with storeflow_up 0
            log.warning("metrics scrape failed: %s", exc, event="metrics")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _collect(self, conn: psycopg.Connection[Any]) -> Iterator[Metric]:
        now = datetime.now(UTC)
        yield from self._overview(conn, now)
        yield from self._webhooks(conn)
        yield from self._queue(conn, now)
        attempts = CounterMetricFamily(
            "storeflow_sync_attempts", "Hipoink sync attempts recorded in sync_log", labels=["store", "status"]
        )
        for r in esl_store.sync_attempts(conn):
            attempts.add_metric([str(r["store_code"]), str(r["status"])], r["n"])
        yield attempts
        active = GaugeMetricFamily("storeflow_alerts_active", "Alert conditions holding now", labels=["kind"])
        for r in conn.execute(ALERTS_ACTIVE).fetchall():
            active.add_metric([r["kind"]], r["n"])
        yield active
        yield from self._downloads(conn)
        yield from self._ingests(conn)
        yield from self._hallmark(conn)
        yield from self._pipeline_runs(conn)
        yield from self._jobs(conn)

    def _overview(self, conn: psycopg.Connection[Any], now: datetime) -> Iterator[Metric]:
        cells = queries.overview_cells(conn, self.settings, now)
        status = GaugeMetricFamily(
            "storeflow_store_status",
            "1 for the current status of each store and pipeline",
            labels=["pipeline", "store", "status"],
        )
        success = GaugeMetricFamily(
            "storeflow_last_success_timestamp_seconds",
            "Last successful run per store and pipeline",
            labels=["pipeline", "store"],
        )
        for cell in cells:
            for name in STATUSES:
                status.add_metric([cell.pipeline, cell.store_key, name], 1 if cell.status == name else 0)
            if cell.last_success_at is not None:
                success.add_metric([cell.pipeline, cell.store_key], cell.last_success_at.timestamp())
        yield status
        yield success
        sessions = GaugeMetricFamily(
            "storeflow_session_age_seconds", "Age of each stored browser session", labels=["session"]
        )
        valid = GaugeMetricFamily(
            "storeflow_session_valid",
            "1 valid, 0 invalid at the last check (absent: never checked)",
            labels=["session"],
        )
        for row in queries.sessions(conn, self.settings):
            if row.age_seconds is not None:
                sessions.add_metric([row.key], row.age_seconds)
            if row.valid is not None:
                valid.add_metric([row.key], 1 if row.valid else 0)
        yield sessions
        yield valid

    def _webhooks(self, conn: psycopg.Connection[Any]) -> Iterator[Metric]:
        received = CounterMetricFamily(
            "storeflow_webhooks_received",
            "Shopify webhooks received, by topic and outcome",
            labels=["topic", "outcome"],
        )
        rejected = CounterMetricFamily(
            "storeflow_webhooks_rejected",
            "Webhooks refused or redundant (ignored, duplicate, invalid, stale, unmatched), by reason",
            labels=["outcome", "reason"],
        )
        by_topic: dict[tuple[str, str], float] = {}
        by_reason: dict[tuple[str, str], float] = {}
        for r in esl_store.webhooks_by_topic(conn, TOPICS):
            k = (str(r["topic"]), str(r["outcome"]))
            by_topic[k] = by_topic.get(k, 0) + r["n"]
            if r["outcome"] in esl_store.WEBHOOK_REJECTED:
                k2 = (str(r["outcome"]), reason_label(str(r["reason"])))
                by_reason[k2] = by_reason.get(k2, 0) + r["n"]
        for labels, n in sorted(by_topic.items()):
            received.add_metric(list(labels), n)
        for labels, n in sorted(by_reason.items()):
            rejected.add_metric(list(labels), n)
        yield received
        yield rejected

    def _queue(self, conn: psycopg.Connection[Any], now: datetime) -> Iterator[Metric]:
        depth = GaugeMetricFamily("storeflow_sync_queue_items", "ESL sync queue items by state", labels=["state"])
        age = GaugeMetricFamily(
            "storeflow_sync_queue_oldest_age_seconds", "Age of the oldest item in each state", labels=["state"]
        )
        seen = esl_store.states_with_age(conn, now)
        for state in sorted(set(esl_store.STATES) | set(seen)):
            r = seen.get(state)
            depth.add_metric([state], r["n"] if r else 0)
            if r and r["age"] is not None and state not in {"succeeded"}:
                age.add_metric([state], float(r["age"]))
        yield depth
        yield age
        oldest = esl_store.oldest_waiting_age(conn, now)
        pending = GaugeMetricFamily("storeflow_sync_queue_oldest_pending_age_seconds", "Oldest item waiting to sync")
        pending.add_metric([], oldest or 0.0)
        yield pending
        latency = queries.latency_histogram(conn, None)
        hist = HistogramMetricFamily(
            "storeflow_sync_latency_seconds", "Webhook acknowledgement to Hipoink answer, every synced item"
        )
        buckets = [(repr(edge), float(n)) for edge, n in zip(latency.edges, latency.cumulative, strict=True)]
        hist.add_metric([], [*buckets, ("+Inf", float(latency.count))], latency.total_seconds)
        yield hist

    def _downloads(self, conn: psycopg.Connection[Any]) -> Iterator[Metric]:
        files = CounterMetricFamily(
            "storeflow_crm_downloads", "CRM report files by status", labels=["crm", "store", "status"]
        )
        size = CounterMetricFamily(
            "storeflow_crm_download_bytes", "CRM report bytes downloaded", labels=["crm", "store"]
        )
        sizes: dict[tuple[str, str], float] = {}
        for r in conn.execute(DOWNLOADS).fetchall():
            key = (r["crm"], f"{r['crm']}_{r['store']}")
            files.add_metric([*key, r["status"]], r["n"])
            sizes[key] = sizes.get(key, 0) + float(r["bytes"])
        for labels, n in sorted(sizes.items()):
            size.add_metric(list(labels), n)
        yield files
        yield size

    def _ingests(self, conn: psycopg.Connection[Any]) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "storeflow_crm_ingests", "CRM file ingestions by status", labels=["crm", "store", "status"]
        )
        rows = CounterMetricFamily(
            "storeflow_crm_rows_ingested",
            "Fact rows inserted or updated by CRM ingestion",
            labels=["crm", "store", "kind"],
        )
        totals: dict[tuple[str, str, str], float] = {}
        for r in conn.execute(INGESTS).fetchall():
            store = f"{r['crm']}_{r['store']}"  # the store key, as in storeflow_store_status
            runs.add_metric([r["crm"], store, r["status"]], r["n"])
            for kind in ("inserted", "updated"):
                k = (r["crm"], store, kind)
                totals[k] = totals.get(k, 0) + float(r[kind])
        for labels, n in sorted(totals.items()):
            rows.add_metric(list(labels), n)
        yield runs
        yield rows

    def _hallmark(self, conn: psycopg.Connection[Any]) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "storeflow_hallmark_runs", "Hallmark extraction runs by kind and status", labels=["kind", "status"]
        )
        items = CounterMetricFamily(
            "storeflow_hallmark_records",
            "Hallmark records per run outcome (downloaded, skipped, failed)",
            labels=["outcome"],
        )
        sums = {"downloaded": 0.0, "skipped": 0.0, "failed": 0.0}
        for r in conn.execute(HALLMARK_RUNS).fetchall():
            runs.add_metric([str(r["kind"]), str(r["status"])], r["n"])
            for k in sums:
                sums[k] += float(r[k])
        for k, n in sums.items():
            items.add_metric([k], n)
        yield runs
        yield items
        orders = GaugeMetricFamily("storeflow_hallmark_orders_imported", "Hallmark orders in PostgreSQL")
        orders.add_metric([], conn.execute(HALLMARK_ORDERS).fetchone()["n"])  # type: ignore[index]
        yield orders

    def _pipeline_runs(self, conn: psycopg.Connection[Any]) -> Iterator[Metric]:
        runs = CounterMetricFamily(
            "storeflow_pipeline_runs", "Runs recorded by every pipeline", labels=["pipeline", "status"]
        )
        for r in conn.execute(PIPELINE_RUNS).fetchall():
            runs.add_metric([r["pipeline"], r["status"]], r["n"])
        yield runs
        found: dict[str, dict[str, float]] = {}
        for r in conn.execute(PORTAL, (list(PORTAL_COUNTERS),)).fetchall():
            found.setdefault(r["key"], {})[r["pipeline"]] = float(r["n"])
        for key, (name, doc) in PORTAL_COUNTERS.items():
            family = CounterMetricFamily(name, doc, labels=["pipeline"])
            for pipeline, n in sorted(found.get(key, {}).items()):
                family.add_metric([pipeline], n)
            yield family

    def _jobs(self, conn: psycopg.Connection[Any]) -> Iterator[Metric]:
        """procrastinate's jobs (absent before `storeflow db migrate` applied its schema)."""
        if not job_queries.has_schema(conn):
            return
        jobs = GaugeMetricFamily(
            "storeflow_jobs", "Jobs procrastinate holds, by queue and status", labels=["queue", "status"]
        )
        counts = job_queries.job_counts(conn)
        for queue in sorted({q for q, _ in counts}):
            for status in job_names.STATUSES:
                jobs.add_metric([queue, status], counts.get((queue, status), 0))
        yield jobs
        durations = HistogramMetricFamily(
            "storeflow_job_duration_seconds",
            "Job attempts from start to end (outcome: succeeded, failed, deferred_for_retry, aborted)",
            labels=["queue", "task", "outcome"],
        )
        for d in job_queries.job_durations(conn):
            buckets = [(repr(edge), float(n)) for edge, n in zip(d.edges, d.cumulative, strict=True)]
            durations.add_metric([d.queue, d.task, d.outcome], [*buckets, ("+Inf", float(d.count))], d.total_seconds)
        yield durations
        retried = job_queries.retried_counts(conn)
        retries = CounterMetricFamily(
            "storeflow_job_retries", "Jobs deferred again, by kind (automatic or manual)", labels=["kind"]
        )
        for kind, n in sorted(retried.items()):
            retries.add_metric([kind], n)
        yield retries


def reason_label(kind: str) -> str:
    """A webhook reason kind (digits already folded to ``#``) as a label value: our own wording up to
    the first quoted value, a header-naming reason cut to its prefix, anything else `other`."""
    for prefix in _HEADER_REASONS:
        if kind.startswith(prefix):
            return prefix
    label = re.split(r"['\"]", kind, maxsplit=1)[0].rstrip(" :")
    return label if _REASON_LABEL.match(label) else OTHER
