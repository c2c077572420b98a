"""Reconciliation runs: list Shopify's catalogue, diff it with `products`, apply through the webhook path.

Every change goes through `esl_ingest_webhook` (`storeflow.esl.store.ingest_deliveries`, the same
call a webhook makes), so the ordering rule is the webhook's: Shopify's ``updatedAt``
decides and a reconciliation never overwrites a newer webhook. Queue items it creates carry
``reason = 'reconcile'``; each run is a `reconcile_runs` row. The caller hands in the connection
(dict rows, not autocommit) and the `AdminClient`.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from storeflow.errors import ConfigError
from storeflow.esl import store
from storeflow.esl.admin import BULK_PRODUCTS, AdminClient, AdminError, parse_shopify_time
from storeflow.esl.reconcile import (
    Action,
    Diff,
    RemoteProduct,
    StoredVariant,
    diff_products,
    group_bulk_lines,
    incremental_since,
    remote_product,
    search_query,
)
from storeflow.esl.transform import FieldError
from storeflow.logs import get_logger

log = get_logger("esl")
INGEST_BATCH = 200
SOURCE_HEADER = "x-storeflow-source"


@dataclass
class RunResult:
    shop: str
    mode: str
    method: str = "pages"
    run_id: int | None = None
    since: datetime | None = None
    snapshot_at: datetime | None = None
    high_water: datetime | None = None
    pages: int = 0
    products_seen: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    skipped_newer: int = 0
    enqueued: int = 0
    requests: int = 0
    cost_used: int = 0
    throttled_retries: int = 0
    waited_seconds: float = 0.0  # pacing for the bucket (not stored)
    seconds: float = 0.0
    status: str = "succeeded"
    error: str | None = None
    changes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "changes"}
        for key in ("since", "snapshot_at", "high_water"):
            out[key] = out[key].isoformat() if out[key] else None
        out["drift"] = self.created + self.updated + self.deleted
        return out


def active_mapping(conn: Any, shop: str) -> dict[str, Any]:
    row = store.active_mapping(conn, shop)
    if row is None:
        raise ConfigError(f"shop {shop} has no active store mapping (see `storeflow esl mappings list`)")
    return dict(row)


def stored_variants(conn: Any, shop: str, product_ids: list[str] | None = None) -> list[StoredVariant]:
    return [StoredVariant.from_row(r) for r in store.stored_variants(conn, shop, product_ids)]


def last_webhook_at(conn: Any, shop: str) -> datetime | None:
    """When the last delivery that really came from Shopify (not a reconciliation) was received."""
    return store.last_webhook_at(conn, shop, SOURCE_HEADER)


def _start_run(conn: Any, result: RunResult, mapping_id: int, trigger: str) -> int:
    run_id = store.start_reconcile_run(conn, result.shop, mapping_id, result.mode, trigger, result.since)
    conn.commit()
    return run_id


def _finish_run(conn: Any, result: RunResult) -> None:
    store.finish_reconcile_run(conn, {k: getattr(result, k) for k in result.__dataclass_fields__ if k != "changes"})
    conn.commit()


def _delivery(shop: str, run_id: int, version: str, action: Action) -> dict[str, Any]:
    remote = action.remote
    node = dict(remote.node) if remote is not None else {"id": f"gid://shopify/Product/{action.product_id}"}
    raw = json.dumps(node, separators=(",", ":"), default=str).encode()
    topic = "products/delete" if action.kind == "delete" else "products/update"
    doc = {"product_id": action.product_id} if action.kind == "delete" else remote.doc() if remote else {}
    return {
        "meta": {
            "shop": shop,
            "topic": topic,
            "event_id": f"reconcile-{run_id}-{action.product_id}",
            "webhook_id": None,
            # Shopify's updatedAt is when this state was true; a delete has no time of its own
            "triggered_at": remote.updated_at.isoformat() if remote else None,
            "api_version": version,
            "headers": {SOURCE_HEADER: "reconcile", "x-storeflow-reconcile-run": str(run_id)},
        },
        "raw": base64.b64encode(raw).decode(),
        "kind": "delete" if action.kind == "delete" else "product",
        "doc": doc,
    }


def apply_diff(conn: Any, shop: str, mapping_id: int, run_id: int, version: str, diff: Diff) -> dict[str, int]:
    """Apply every action (batches of INGEST_BATCH, one transaction each); returns outcome counts."""
    outcomes: dict[str, int] = {"items": 0}
    through_ingest = [a for a in diff.actions if a.kind in ("upsert", "delete")]
    for start in range(0, len(through_ingest), INGEST_BATCH):
        batch = through_ingest[start : start + INGEST_BATCH]
        rows = store.ingest_deliveries(conn, [_delivery(shop, run_id, version, a) for a in batch])
        store.mark_reconciled(conn, [r["inbox_id"] for r in rows])
        for row in rows:
            outcomes[row["outcome"]] = outcomes.get(row["outcome"], 0) + 1
        outcomes["items"] = outcomes.get("items", 0) + sum(r["enqueued"] for r in rows)
        conn.commit()
    for action in diff.actions:
        if action.kind == "deactivate" and action.remote is not None:
            enqueued = store.deactivate_product(
                conn, shop=shop, product=action.product_id, updated_at=action.remote.updated_at, mapping_id=mapping_id
            )
            outcomes["items"] = outcomes.get("items", 0) + enqueued
    store.notify_workers(conn)
    conn.commit()
    return outcomes


def _remote_pages(client: AdminClient, query: str | None, result: RunResult) -> Iterator[list[RemoteProduct]]:
    for nodes in client.product_pages(query):
        result.pages += 1
        yield _parse_all(nodes, result)


def _parse_all(nodes: Iterable[dict[str, Any]], result: RunResult) -> list[RemoteProduct]:
    """Product nodes -> RemoteProducts; one with an unusable id or time is reported and skipped."""
    out = []
    for node in nodes:
        try:
            product = remote_product(node)
        except FieldError as exc:
            log.warning("shop %s: product %s skipped: %s", result.shop, node.get("id"), exc, event="reconcile")
            result.changes.append(f"skipped product {node.get('id')}: {exc}")
            continue
        out.append(product)
        if result.high_water is None or product.updated_at > result.high_water:
            result.high_water = product.updated_at
    result.products_seen += len(out)
    return out


def _full_listing(client: AdminClient, result: RunResult) -> list[RemoteProduct]:
    """Every product: a bulk operation, or paginated queries when the bulk operation fails."""
    listing_began = datetime.now(UTC)
    try:
        op = client.run_bulk_query(BULK_PRODUCTS)
    except AdminError as exc:
        log.warning("shop %s: bulk operation not possible (%s); paginating", result.shop, exc, event="reconcile")
        op = {"status": "FAILED", "errorCode": str(exc)}
    if op.get("status") == "COMPLETED":
        result.method = "bulk"
        result.snapshot_at = parse_shopify_time(op["createdAt"]) if op.get("createdAt") else listing_began
        lines: Iterable[dict[str, Any]] = client.bulk_lines(op["url"]) if op.get("url") else []
        return _parse_all(group_bulk_lines(lines), result)
    log.warning(
        "shop %s: bulk operation %s %s (%s); falling back to paginated queries",
        result.shop,
        op.get("id", ""),
        op.get("status"),
        op.get("errorCode"),
        event="reconcile",
    )
    result.method = "bulk->pages"
    result.snapshot_at = listing_began
    return [p for page in _remote_pages(client, None, result) for p in page]


def reconcile_shop(
    conn: Any,
    client: AdminClient,
    *,
    full: bool = False,
    since: datetime | None = None,
    dry_run: bool = False,
    trigger: str = "manual",
) -> RunResult:
    """One reconciliation of ``client``'s shop. Dry runs only fill ``changes``; others are recorded."""
    config = client.config
    shop = config.shop
    started = time.monotonic()
    mapping = active_mapping(conn, shop)
    result = RunResult(shop=shop, mode="full" if full else "incremental")
    if not full:
        result.since = since or incremental_since(
            store.last_high_water(conn, shop), store.newest_stored(conn, shop), config.overlap_seconds
        )
    conn.commit()
    if not dry_run:
        result.run_id = _start_run(conn, result, mapping["id"], trigger)
    try:
        if full:
            remote = _full_listing(client, result)
            stored = stored_variants(conn, shop)
            diff = diff_products(
                stored, remote, full=True, snapshot_at=result.snapshot_at, inactive=config.inactive_products
            )
            _count(result, diff)
            if not dry_run:
                _applied(result, apply_diff(conn, shop, mapping["id"], result.run_id or 0, config.api_version, diff))
        else:
            for page in _remote_pages(client, search_query(result.since), result):
                stored = stored_variants(conn, shop, [p.product_id for p in page])
                diff = diff_products(stored, page, full=False, inactive=config.inactive_products)
                _count(result, diff)
                if not dry_run:
                    _applied(
                        result, apply_diff(conn, shop, mapping["id"], result.run_id or 0, config.api_version, diff)
                    )
            if result.high_water is None:
                result.high_water = result.since
    except Exception as exc:
        conn.rollback()
        result.status = "failed"
        result.error = str(exc)[:1000]
        _finish(conn, client, result, started, dry_run)
        raise
    _finish(conn, client, result, started, dry_run)
    return result


def _count(result: RunResult, diff: Diff) -> None:
    result.created += diff.count("create")
    result.updated += diff.count("update")
    result.deleted += diff.count("delete")
    result.unchanged += diff.unchanged
    result.skipped_newer += diff.skipped_newer
    result.changes += [c.describe() for a in diff.actions for c in a.changes]


def _applied(result: RunResult, outcomes: dict[str, int]) -> None:
    result.enqueued += outcomes.get("items", 0)
    # a product the ingest function found older than what we hold (a webhook won the race)
    result.skipped_newer += outcomes.get("stale", 0)


def _finish(conn: Any, client: AdminClient, result: RunResult, started: float, dry_run: bool) -> None:
    result.requests = client.stats.requests
    result.cost_used = client.stats.cost_used
    result.throttled_retries = client.stats.throttled_retries
    result.waited_seconds = round(client.stats.waited_seconds, 3)
    result.seconds = round(time.monotonic() - started, 3)
    if not dry_run and result.run_id is not None:
        _finish_run(conn, result)
    log.info(
        "shop %s: %s reconciliation %s: %d created, %d updated, %d deleted, %d unchanged, %d skipped (newer)",
        result.shop,
        result.mode,
        result.status,
        result.created,
        result.updated,
        result.deleted,
        result.unchanged,
        result.skipped_newer,
        event="reconcile",
    )


def shop_overview(conn: Any) -> list[dict[str, Any]]:
    """Per active shop, for the dashboard's ESL page: subscriptions OK/missing, last webhook, last
    reconciliation with its counts, and its drift (non-zero: webhooks were lost)."""
    out = []
    for row in store.shop_overview_rows(conn, SOURCE_HEADER):
        item = dict(row)
        if item["subscriptions_checked_at"] is None:
            item["subscriptions"] = "unknown"
        else:
            missing = set(item["subscriptions_missing"] or ())
            recreated = missing <= set(item["subscriptions_created"] or ())
            # Shopify had deleted some: the check re-created them, or could not (still missing)
            item["subscriptions"] = "ok" if not missing else "re-created" if recreated else "missing"
        counts = (item["last_run_created"], item["last_run_updated"], item["last_run_deleted"])
        item["drift"] = sum(counts) if item["last_run_id"] is not None else None
        out.append(item)
    return out
