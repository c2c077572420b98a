"""`storeflow demo` step for spec 002: a mapping, a burst of webhooks, the worker draining to the simulator."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import httpx

from storeflow.esl.models import StoreMappingIn, StoreMappingUpdate
from storeflow.esl.store import create_mapping, find_mapping, queue_stats, store_sync_counts, update_mapping
from storeflow.esl.worker import WorkerConfig, run_worker
from storeflow.sandbox.shopify import build_deliveries, send_deliveries
from storeflow.web.server import serve_in_thread

if TYPE_CHECKING:
    from storeflow.demo import DemoContext, DemoResult

SHOP = "demo-shop.myshopify.com"
STORE = "DEMO01"


def ensure_mapping(conn: Any) -> dict[str, Any]:
    found = find_mapping(conn, SHOP)
    if found is None:
        row = create_mapping(conn, StoreMappingIn(source_store_id=SHOP, hipoink_store_code=STORE, stock_field="f1"))
    else:
        row = update_mapping(conn, found["id"], StoreMappingUpdate(is_active=True, stock_field="f1"))
    conn.commit()
    assert row is not None
    return row


def run_demo(ctx: DemoContext) -> DemoResult:
    from storeflow.demo import DemoResult
    from storeflow.web.app import create_app

    settings = ctx.settings
    settings.require("HIPOINK_API_BASE_URL", "SHOPIFY_WEBHOOK_SECRET")
    assert settings.HIPOINK_API_BASE_URL is not None and settings.SHOPIFY_WEBHOOK_SECRET is not None
    secret = settings.SHOPIFY_WEBHOOK_SECRET.get_secret_value()
    with ctx.db.connect() as conn:
        ensure_mapping(conn)
    plans = [
        build_deliveries("products/create", 60, secret, SHOP, seed=7),
        build_deliveries("products/update", 40, secret, SHOP, seed=7, duplicates=0.1, shuffle=True),
        build_deliveries("inventory_levels/update", 20, secret, SHOP, seed=7),
        build_deliveries("products/delete", 5, secret, SHOP, seed=7, start=55),
    ]
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    with serve_in_thread(create_app(settings, ctx.db)) as url:
        ctx.console.print(f"  webhook receiver on {url}; sending {sum(len(p.deliveries) for p in plans)} webhooks")
        for plan in plans:
            result = asyncio.run(send_deliveries(plan.deliveries, url, concurrency=8))
            statuses.update(result.statuses)
    config = WorkerConfig.from_settings(settings, rate_per_second=max(settings.HIPOINK_RATE_LIMIT_PER_SECOND, 50))
    stats = asyncio.run(
        run_worker(
            ctx.db.url,
            config,
            settings.HIPOINK_API_BASE_URL,
            settings.HIPOINK_CLIENT_ID,
            settings.HIPOINK_API_SECRET.get_secret_value(),
            drain=True,
        )
    )
    elapsed = time.monotonic() - started
    labels = httpx.get(f"{settings.HIPOINK_API_BASE_URL}/_sandbox/products", params={"store_code": STORE}).json()
    with ctx.db.connect() as conn:
        queue = queue_stats(conn)
        expected, invalid = store_sync_counts(conn, STORE)
    outcomes = queue["inbox_last_24h"]
    ok = (
        set(statuses) == {200}
        and queue["dead_letters"] == 0
        and labels["count"] == expected
        and queue["counts"]["pending"] == queue["counts"]["in_progress"] == 0
    )
    return DemoResult(
        "esl",
        ok,
        figures=[
            ("webhooks", f"{sum(statuses.values())} sent, all {'200' if set(statuses) == {200} else statuses}"),
            ("inbox", ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))),
            ("labels", f"{labels['count']} products on Hipoink store {STORE} (expected {expected})"),
            ("worker", f"{stats.requests} requests, {stats.products_sent} products in {elapsed:.1f}s"),
            ("invalid variants", f"{invalid} (not sent; sync_log says why)"),
        ],
        note="" if ok else f"dead letters {queue['dead_letters']}, queue {queue['counts']}",
    )
