"""The ESL page against the ESL pipeline's own code: real webhooks, a real worker, the Hipoink simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright

from storeflow.browser import launch
from storeflow.esl.transform import sign_body
from storeflow.esl.worker import WorkerConfig, run_worker
from storeflow.sandbox.hipoink import HipoinkSimulator
from storeflow.sandbox.host import SandboxHost
from storeflow.sandbox.shopify import make_product, shopify_dumps
from storeflow.settings import Settings
from tests.integration.dashboard.conftest import serve

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
            assert client.post("/api/store-mappings/", json=mapping).status_code == 201
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
