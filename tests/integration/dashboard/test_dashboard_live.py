"""Pages against the pipelines' own code: ESL webhooks, worker and Hipoink simulator; CRM ingestion;
Hallmark checkpoints and import."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright

from storeflow.browser import launch
from storeflow.crm.ingest import ingest_file
from storeflow.crm.store import FileInfo
from storeflow.db.connect import Database
from storeflow.esl.worker import WorkerConfig, run_worker
from storeflow.hallmark import store
from storeflow.hallmark.importer import import_directory
from storeflow.hallmark.records import flatten_order, record_path
from storeflow.sandbox.hipoink import HipoinkSimulator
from storeflow.sandbox.host import SandboxHost
from storeflow.sandbox.shopify import make_product, shopify_dumps
from storeflow.sandbox.shopify import sign_webhook as sign_body
from storeflow.sandbox.tumbledry import order_report_xlsx, report_rows
from storeflow.settings import Settings
from storeflow.web.keys import local_api_token
from tests.integration.dashboard.conftest import one, serve

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

SHOP = "live-shop.myshopify.com"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(browser_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await launch(pw, browser_path, headless=True)
        yield chromium
        await chromium.close()


async def drain(settings: Settings, db_url: str, sign: str) -> None:
    config = WorkerConfig.from_settings(settings)
    await run_worker(db_url, config, settings.HIPOINK_API_BASE_URL or "", settings.HIPOINK_CLIENT_ID, sign, drain=True)


async def test_dead_letters_from_a_real_worker_are_retried_from_the_page(
    browser: Browser, dash_settings: Callable[..., Settings], db_url: str, conn: psycopg.Connection[Any],
    sandbox: Callable[..., SandboxHost], test_output: Path,
) -> None:  # fmt: skip
    host = sandbox("hipoink", seed=3)
    sim = host.sim("hipoink")
    assert isinstance(sim, HipoinkSimulator)
    env = sim.client_config(host.urls["hipoink"]).env
    settings = dash_settings(
        **env, APP_ENVIRONMENT="test", MAX_RETRY_ATTEMPTS="1", HIPOINK_RATE_LIMIT_PER_SECOND="1000"
    )
    page = await (await browser.new_context(viewport={"width": 1360, "height": 900})).new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    with serve(settings, db_url) as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            mapping = {"source_system": "shopify", "source_store_id": SHOP, "hipoink_store_code": "LIVE1"}
            local = {"Authorization": f"Bearer {local_api_token(settings.home)}"}  # no STOREFLOW_ADMIN_TOKEN set
            assert client.post("/api/store-mappings/", json=mapping, headers=local).status_code == 201
            for i in range(6):
                body = shopify_dumps(make_product(3, i))
                headers = {
                    "X-Shopify-Topic": "products/create", "X-Shopify-Shop-Domain": SHOP,
                    "X-Shopify-Event-Id": f"ev-{i}", "X-Shopify-Webhook-Id": f"wh-{i}",
                    "X-Shopify-Hmac-Sha256": sign_body(env["SHOPIFY_WEBHOOK_SECRET"], body),
                    "Content-Type": "application/json",
                }  # fmt: skip
                assert (
                    client.post("/webhooks/shopify/products/create", content=body, headers=headers).status_code == 200
                )
        # a wrong Hipoink sign: HTTP 200 with error_code != 0, a permanent failure -> dead letters
        await drain(settings, db_url, "wrong-sign")
        queued = conn.execute("SELECT count(*) AS n FROM sync_queue WHERE state IN ('failed', 'dead')").fetchone()
        assert queued is not None and queued["n"] > 0

        await page.goto(base + "/dashboard")
        cell = page.locator("[data-testid=grid] tr[data-store='esl_LIVE1'] td[data-pipeline='esl']")
        assert await cell.get_attribute("data-status") == "failing"
        await page.goto(base + "/dashboard/esl")
        await page.screenshot(path=str(test_output / "esl-dead-letters.png"), full_page=True)
        assert await page.locator("[data-testid=dead] tbody tr").count() == queued["n"]
        assert await page.inner_text("[data-testid=webhooks-enqueued]") == "6"

        await page.click("[data-testid=retry-all]")
        await page.wait_for_url(lambda url: "retried=" in url)
        assert f"Re-enqueued {queued['n']} dead letter" in await page.inner_text("[data-testid=retried]")
        await drain(settings, db_url, env["HIPOINK_API_SECRET"])

        await page.goto(base + "/dashboard/esl")
        await page.screenshot(path=str(test_output / "esl-after-retry.png"), full_page=True)
        counts = {r["state"]: r["n"] for r in conn.execute(
            "SELECT state, count(*) AS n FROM sync_queue GROUP BY state").fetchall()}  # fmt: skip
        assert set(counts) == {"succeeded"}
        assert await page.inner_text("[data-testid=queue-succeeded]") == str(counts["succeeded"])
        assert await page.inner_text("[data-testid=queue-dead]") == "0"
        synced = conn.execute("SELECT count(*) AS n FROM sync_log WHERE status = 'succeeded'").fetchone()
        assert synced is not None and synced["n"] > 0
        await page.goto(base + "/dashboard/charts")
        assert await page.inner_text("[data-testid=latency-count]") == str(synced["n"])
        await page.screenshot(path=str(test_output / "charts-live.png"), full_page=True)
        labels = httpx.get(host.urls["hipoink"] + "/_sandbox/products", params={"store_code": "LIVE1"}).json()
        assert len(labels["products"]) == counts["succeeded"]
    assert problems == []
    await page.context.close()


async def test_crm_pages_after_the_crm_pipelines_own_ingestion(
    browser: Browser, dash_settings: Callable[..., Settings], db_url: str, conn: psycopg.Connection[Any],
    tmp_path: Path, test_output: Path,
) -> None:  # fmt: skip
    settings = dash_settings()
    end = date.today()
    start = end - timedelta(days=6)
    run = uuid.uuid4()
    good = tmp_path / "TD_OrderReport_UttamNagar.xlsx"
    good.write_bytes(order_report_xlsx(report_rows(7, "a668", start, end), start, end))
    bad = tmp_path / "TD_OrderReport_KirtiNagar.xlsx"
    bad.write_bytes(order_report_xlsx(report_rows(7, "a817", start, end), start, end, drop="Net Amount"))
    ok = ingest_file(conn, good, FileInfo(run, "td", "a668", "OrderReport", "browser", start, end))
    failed = ingest_file(conn, bad, FileInfo(run, "td", "a817", "OrderReport", "browser", start, end))
    conn.commit()
    assert ok.status == "ok" and ok.inserted > 0 and failed.status == "failed"

    page = await (await browser.new_context(viewport={"width": 1360, "height": 900})).new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    with serve(settings, db_url) as base:
        await page.goto(base + "/dashboard")
        grid = page.locator("[data-testid=grid]")
        assert (
            await grid.locator("tr[data-store='td_a668'] td[data-pipeline='crm_ingest']").get_attribute("data-status")
            == "ok"
        )
        assert (
            await grid.locator("tr[data-store='td_a817'] td[data-pipeline='crm_ingest']").get_attribute("data-status")
            == "failing"
        )
        await page.screenshot(path=str(test_output / "overview-crm.png"), full_page=True)
        await page.goto(base + "/dashboard/crm")
        await page.screenshot(path=str(test_output / "crm.png"), full_page=True)
        facts = conn.execute("SELECT count(*) AS n FROM fact_td_orders").fetchone()
        assert facts is not None and facts["n"] == ok.inserted
        assert (await page.inner_text("[data-testid=rows-inserted]")).replace(",", "") == str(ok.inserted)
        assert (await page.inner_text("[data-testid=fact_td_orders]")).replace(",", "") == str(facts["n"])
        assert failed.error and failed.error[:30] in await page.inner_text("[data-testid=failures]")
        await page.goto(base + "/dashboard/charts")
        total = one(conn, "SELECT sum(net_amount) AS s FROM fact_td_orders WHERE store_code = 'a668'")
        shown = await page.inner_text("[data-store='td_a668']")
        assert Decimal(shown.replace(",", "")) == total["s"]
    assert problems == []
    await page.context.close()


async def test_hallmark_page_after_the_hallmark_pipelines_own_checkpoint_and_import(
    browser: Browser, dash_settings: Callable[..., Settings], db_url: str, conn: psycopg.Connection[Any],
    tmp_path: Path, test_output: Path,
) -> None:  # fmt: skip
    settings = dash_settings()
    conn.execute("INSERT INTO stores (customer_id, store_number, store_name) VALUES ('C7', '0701', 'Gift Shop 701')")
    run_id = store.create_run(conn, "bulk-orders", {"start_date": "2026-09-01", "end_date": "2026-10-31"})
    ids = [f"70000{i}" for i in range(5)]
    store.add_items(conn, run_id, "order", [(i, "C7", None) for i in ids])
    conn.commit()
    # the extractor's output tree, then the pipeline's own importer over it
    data = tmp_path / "data"
    for n, order_id in enumerate(ids[:4]):
        # the portal's shapes: "$1,234.56 " amounts, MM/DD/YYYY dates
        header = {"customerId": "C7", "storeName": "GIFT SHOP #701", "orderTotal": f"$1,{200 + n}.50 ",
                  "orderCreationDate": f"{9 + n % 2:02d}/15/2026"}  # fmt: skip
        record = flatten_order(order_id, {"orderHeader": header, "orderLines": []})
        path = record_path(data, "order", order_id, record, {"C7": "0701"})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record), encoding="utf-8")
        store.update_item(conn, run_id, "order", order_id, "downloaded", path=str(path))
    db = Database(db_url, kind="test")
    try:
        summary = import_directory(db, data)
    finally:
        db.close()
    assert summary.orders == 4 and not summary.failed
    store.update_item(conn, run_id, "order", ids[4], "failed", error="HTTP 429 past the Retry-After cap")
    store.finish(conn, run_id, "stopped", store.counts(conn, run_id), "rate limit: stopped, resumable")
    conn.commit()

    page = await (await browser.new_context(viewport={"width": 1360, "height": 900})).new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    with serve(settings, db_url) as base:
        await page.goto(base + "/dashboard/hallmark")
        await page.screenshot(path=str(test_output / "hallmark.png"), full_page=True)
        grand = conn.execute("SELECT count(*) AS n, sum(order_total) AS total FROM orders").fetchone()
        assert grand is not None and grand["n"] == 4
        assert await page.inner_text("[data-testid=orders]") == "4"
        assert Decimal((await page.inner_text("[data-testid=order-total]")).replace(",", "")) == grand["total"]
        run_row = page.locator("[data-testid=runs-table] tbody tr").first
        assert "downloaded 4" in await run_row.inner_text() and "failed 1" in await run_row.inner_text()
        assert "storeflow hallmark --resume" in await run_row.inner_text()
        totals = await page.inner_text("[data-testid=totals]")
        assert "Gift Shop 701" in totals and "2026-09" in totals and "2026-10" in totals
        await page.goto(base + "/dashboard")
        cell = page.locator("[data-testid=grid] tr[data-store='hallmark'] td[data-pipeline='hallmark']")
        assert await cell.get_attribute("data-status") == "failing"
    assert problems == []
    await page.context.close()
