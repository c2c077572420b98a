"""Extraction runs: ids or a bulk search -> checkpointed items -> detail calls -> JSON files.

Every run is a `hallmark_runs` row; the records it must fetch are
`hallmark_run_items` rows, so a run stopped by Ctrl-C, a crash or a rate-limit
stop continues with ``--resume`` (the search is not repeated once complete).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from storeflow.db.connect import Database
from storeflow.errors import ConfigError, RateLimitStop, StoreflowError
from storeflow.hallmark import aura, store
from storeflow.hallmark.auth import Authenticator
from storeflow.hallmark.client import AuraClient, HallmarkClientConfig, RequestFailedError
from storeflow.hallmark.records import (
    RecordKind,
    flatten_billing,
    flatten_delivery,
    flatten_order,
    normalise_id,
    record_path,
    split_ids,
)
from storeflow.hallmark.storage import OutputIndex
from storeflow.http.shared import account_throttle
from storeflow.http.throttle import Throttle
from storeflow.logs import get_logger
from storeflow.paths import UnsafePathError, shown

if TYPE_CHECKING:
    from storeflow.settings import Settings

log = get_logger("extractors")
RunKind = Literal["orders", "billing", "bulk-orders", "bulk-billing-documents"]
BULK_KINDS = ("bulk-orders", "bulk-billing-documents")
CUSTOMER_CHUNK = 25


@dataclass
class ExtractRequest:
    """What the operator asked for (the CLI's selectors and options)."""

    kind: RunKind | None
    ids: list[str] = field(default_factory=list)
    start: date | None = None
    end: date | None = None
    customer_ids: list[str] = field(default_factory=list)
    billing_status: str = "All"
    search_only: bool = False
    with_deliveries: bool = False
    update: bool = False
    max_consecutive_failures: int = 3
    resume: bool = False
    source: str | None = None

    def params(self) -> dict[str, Any]:
        return {
            "ids": self.ids if not self.kind or self.kind not in BULK_KINDS else [],
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "customer_ids": self.customer_ids,
            "billing_status": self.billing_status,
            "with_deliveries": self.with_deliveries,
            "source": self.source,
        }


@dataclass
class RunSummary:
    run_id: uuid.UUID
    kind: str
    status: str = "running"
    downloaded: int = 0
    skipped: int = 0
    failed: int = 0
    pending: int = 0
    found: int = 0
    elapsed: float = 0.0
    resumed: bool = False
    logins: int = 0
    reused_session: bool = False
    rate_limited: int = 0
    message: str = ""
    failures: list[tuple[str, str]] = field(default_factory=list)
    by_customer: dict[str, int] = field(default_factory=dict)


Progress = Callable[[str, int, int], None]  # (phase, done, total)


@dataclass(frozen=True)
class ExtractConfig:
    """What an extraction reads from the settings."""

    client: HallmarkClientConfig
    output: Path
    store_numbers: Mapping[str, str] = field(default_factory=dict)  # customer_id -> store number (TOML)
    default_customers: tuple[str, ...] = ()  # [hallmark] default_customer_ids, else the TOML stores' ids

    @classmethod
    def from_settings(cls, settings: Settings, output: Path | None = None) -> ExtractConfig:
        hallmark = settings.config.hallmark
        return cls(
            client=HallmarkClientConfig.from_settings(settings),
            output=output or settings.OUTPUT_DIRECTORY,
            store_numbers={s.customer_id: s.store_number for s in hallmark.stores},
            default_customers=tuple(hallmark.default_customer_ids or [s.customer_id for s in hallmark.stores]),
        )


def store_numbers(configured: Mapping[str, str], db: Database) -> dict[str, str]:
    """customer_id -> canonical store number: the `stores` table, else the TOML mapping."""
    mapping = dict(configured)
    with db.transaction() as conn:
        for row in conn.execute("SELECT customer_id, store_number FROM stores").fetchall():
            mapping[str(row["customer_id"])] = str(row["store_number"])
    return mapping


def default_customers(config: ExtractConfig) -> list[str]:
    if not config.default_customers:
        raise ConfigError(
            "no customer ids: pass --customer-ids or set [hallmark] default_customer_ids in the storeflow TOML file"
        )
    return list(config.default_customers)


class Extractor:
    """Runs one extraction request against the portal with one session and one throttle."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        auth: Authenticator,
        output: Path | None = None,
        progress: Progress | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self.config = ExtractConfig.from_settings(settings, output)
        self.db = db
        self.auth = auth
        self.output = self.config.output
        self.progress = progress or (lambda phase, done, total: None)
        self.throttle = throttle or account_throttle(settings, db.url, db.pool_config)
        self._client: AuraClient | None = None

    async def run(self, request: ExtractRequest) -> RunSummary:
        started = time.monotonic()
        run_id, kind, searched, params = self._open(request)
        summary = RunSummary(run_id, kind, resumed=request.resume)
        async with httpx.AsyncClient(headers={"User-Agent": "Mozilla/5.0 storeflow"}) as http:
            client = AuraClient(self.config.client, http, self.auth, self.throttle)
            self._client = client
            try:
                if kind in BULK_KINDS and not searched:
                    await self._search(client, run_id, kind, params, summary)
                if request.search_only:
                    summary.status = "ok"
                    self._finish(summary, "ok", None)
                    return summary
                await self._fetch_all(client, run_id, params, request, summary)
                # the run's status follows its items' tally, which _finish reads
                self._finish(summary, None, summary.failures[-1][1] if summary.failures else None)
            except RateLimitStop as exc:
                self._finish(summary, "stopped", str(exc))
                raise RateLimitStop(
                    f"{exc}. Progress is saved (run {run_id}); continue with `storeflow hallmark --resume`."
                ) from exc
            except BaseException as exc:
                self._finish(summary, "stopped", f"interrupted: {type(exc).__name__}: {exc}"[:500])
                raise
            finally:
                await self.throttle.aclose()
                summary.elapsed = time.monotonic() - started
                summary.logins = self.auth.logins
                summary.reused_session = self.auth.reused > 0
                summary.rate_limited = client.stats.rate_limited
        return summary

    # ---------------------------------------------------------------- run bookkeeping

    def _open(self, request: ExtractRequest) -> tuple[uuid.UUID, str, bool, dict[str, Any]]:
        with self.db.transaction() as conn:
            if request.resume:
                run = store.find_resumable(conn, request.kind)
                if run is None:
                    raise StoreflowError("nothing to resume: no stopped, failed or interrupted hallmark run")
                store.reopen(conn, run.run_id, run.kind)
                log.info("resuming run %s (%s)", run.run_id, run.kind, event="resume")
                return run.run_id, run.kind, run.search_complete, dict(run.params)
            if request.kind is None:
                raise ConfigError("choose what to extract (--order-id, --orders, --bulk-orders ...) or --resume")
            params = request.params()
            run_id = store.create_run(conn, request.kind, params)
            if request.kind not in BULK_KINDS:
                item_kind = "order" if request.kind == "orders" else "billing"
                store.add_items(conn, run_id, item_kind, [(normalise_id(i), None, None) for i in request.ids])
                store.mark_searched(conn, run_id)
            log.info("run %s: %s %s", run_id, request.kind, params, event="run")
            return run_id, request.kind, request.kind not in BULK_KINDS, params

    def _finish(self, summary: RunSummary, status: str | None, error: str | None) -> None:
        """Record the run's end; ``status`` None: "failed" when any item failed, else "ok"."""
        with self.db.transaction() as conn:
            tally = store.counts(conn, summary.run_id)
            status = status or ("failed" if tally.failed else "ok")
            store.finish(conn, summary.run_id, status, tally, error, self._portal_figures())
        summary.status = status
        summary.downloaded, summary.skipped, summary.failed = tally.downloaded, tally.skipped, tally.failed
        summary.pending, summary.found = tally.pending, tally.total
        log.info("run %s %s: %s", summary.run_id, status, tally.as_dict(), event="summary")

    def _portal_figures(self) -> dict[str, int]:
        """Portal traffic of this run, kept in the pipeline_runs summary for the dashboard's /metrics."""
        client = self._client
        if client is None:
            return {}
        return {
            "portal_requests": client.stats.calls,
            "rate_limited": client.stats.rate_limited,
            "relogins": client.stats.reauthenticated,
        }

    # ---------------------------------------------------------------- search

    async def _search(
        self, client: AuraClient, run_id: uuid.UUID, kind: str, params: dict[str, Any], summary: RunSummary
    ) -> None:
        customers = list(params.get("customer_ids") or []) or default_customers(self.config)
        start, end = params.get("start"), params.get("end")
        if not start or not end:
            raise ConfigError("--bulk-orders / --bulk-billing-documents need --start-date and --end-date")
        rows: list[tuple[str, str | None, Any]] = []
        chunks = [customers[i : i + CUSTOMER_CHUNK] for i in range(0, len(customers), CUSTOMER_CHUNK)]
        for number, chunk in enumerate(chunks, start=1):
            page, total = 1, None
            while True:
                if kind == "bulk-orders":
                    action = aura.order_search(chunk, start, end, page)
                else:
                    action = aura.billing_search(chunk, start, end, page, params.get("billing_status") or "All")
                found, total = aura.search_page(await client.call(action))
                for row in found:
                    rid = row.get("orderId") if kind == "bulk-orders" else row.get("billingDocumentNumber")
                    if rid not in (None, ""):
                        rows.append((normalise_id(rid), str(row.get("customerId") or "") or None, row))
                self.progress("search", number, len(chunks))
                if not found or len(found) < 50 or (total is not None and page * 50 >= total):
                    break
                page += 1
        for _rid, cust, _row in rows:
            summary.by_customer[cust or "?"] = summary.by_customer.get(cust or "?", 0) + 1
        with self.db.transaction() as conn:
            store.add_items(conn, run_id, "order" if kind == "bulk-orders" else "billing", rows)
            store.mark_searched(conn, run_id)
        log.info("search %s %s..%s: %d records for %d customers", kind, start, end, len(rows), len(customers),
                 event="search")  # fmt: skip

    # ---------------------------------------------------------------- details

    async def _fetch_all(
        self,
        client: AuraClient,
        run_id: uuid.UUID,
        params: dict[str, Any],
        request: ExtractRequest,
        summary: RunSummary,
    ) -> None:
        index = OutputIndex(self.output)
        stores = store_numbers(self.config.store_numbers, self.db)
        with self.db.transaction() as conn:
            items = store.todo(conn, run_id)
        with_deliveries = request.with_deliveries or bool(params.get("with_deliveries"))
        consecutive = 0
        total = len(items)
        self.progress("download", 0, total)
        for done, (kind, record_id, _customer) in enumerate(items, start=1):
            item_kind: RecordKind = "order" if kind == "order" else "billing"
            if not request.update and index.has(item_kind, record_id):
                self._mark(run_id, kind, record_id, "skipped", path=str(index.get(item_kind, record_id)), tried=False)
                self.progress("download", done, total)
                continue
            try:
                record = await self._fetch(client, item_kind, record_id, with_deliveries)
            except (aura.ActionError, RequestFailedError) as exc:
                consecutive += 1
                summary.failures.append((record_id, str(exc)))
                log.error("%s %s failed: %s", item_kind, record_id, exc, event="failed")
                self._mark(run_id, kind, record_id, "failed", error=str(exc)[:1000])
                self.progress("download", done, total)
                if consecutive >= request.max_consecutive_failures:
                    raise RateLimitStop(
                        f"stopped after {consecutive} consecutive failures (--max-consecutive-failures "
                        f"{request.max_consecutive_failures}); last: {exc}"
                    ) from exc
                continue
            consecutive = 0
            try:
                path = index.save(item_kind, record_id, record_path(self.output, item_kind, record_id, record, stores),
                                  record)  # fmt: skip
            except UnsafePathError as exc:  # the portal's values, not the portal: no consecutive-failure stop
                message = f"{item_kind} {shown(record_id)}: {exc}"
                summary.failures.append((record_id, message))
                log.error("%s", message, event="failed")
                self._mark(run_id, kind, record_id, "failed", error=message[:1000])
                self.progress("download", done, total)
                continue
            log.info("saved %s", path, event="saved")
            self._mark(run_id, kind, record_id, "downloaded", path=str(path))
            self.progress("download", done, total)

    async def _fetch(
        self, client: AuraClient, kind: RecordKind, record_id: str, with_deliveries: bool
    ) -> dict[str, Any]:
        if kind == "order":
            value = await client.call(aura.order_detail(record_id))
            if not isinstance(value, dict) or not value.get("orderHeader"):
                raise aura.ActionError(f"order {record_id}: no orderHeader in the answer")
            record = flatten_order(record_id, value)
            if with_deliveries:
                record["deliveries"] = [
                    flatten_delivery(d, await client.call(aura.delivery_detail(d)))
                    for d in split_ids(record.get("delivery_id"))
                ]
            return record
        value = await client.call(aura.billing_detail(record_id))
        if not isinstance(value, dict) or not value.get("invoiceHeader"):
            raise aura.ActionError(f"billing document {record_id}: no invoiceHeader in the answer")
        return flatten_billing(record_id, value)

    def _mark(
        self,
        run_id: uuid.UUID,
        kind: str,
        record_id: str,
        status: str,
        error: str | None = None,
        path: str | None = None,
        tried: bool = True,
    ) -> None:
        with self.db.transaction() as conn:
            store.update_item(conn, run_id, kind, record_id, status, error, path, tried)
