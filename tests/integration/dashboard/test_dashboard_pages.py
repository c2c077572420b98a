"""Every dashboard page in the real Chromium: loads cleanly, shows the database's figures, screenshots."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright
from prometheus_client.parser import text_string_to_metric_families

from storeflow.browser import launch
from storeflow.settings import Settings
from tests.integration.dashboard.conftest import one, seed, serve

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

PAGES = ("/dashboard", "/dashboard/crm", "/dashboard/hallmark", "/dashboard/esl", "/dashboard/jobs",
         "/dashboard/sessions", "/dashboard/charts")  # fmt: skip


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser(browser_path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await launch(pw, browser_path, headless=True)
        yield chromium
        await chromium.close()


class Watched:
    """A page whose console errors, page errors and failed requests are collected."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", self._failed)
        page.on("response", lambda r: self.problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)

    def _failed(self, request: Any) -> None:
        # a navigation cancels the previous page's pending requests (favicon): not a defect
        if request.failure != "net::ERR_ABORTED":
            self.problems.append(f"request failed: {request.url} {request.failure}")

    async def visit(self, url: str, shot: Path) -> None:
        response = await self.page.goto(url)
        assert response is not None and response.status == 200, url
        # nothing may come from anywhere but this server (offline operation): enforced by the CSP
        assert "default-src 'none'" in (await response.all_headers())["content-security-policy"]
        await self.page.screenshot(path=str(shot), full_page=True)
        assert self.problems == [], self.problems

    async def text(self, selector: str) -> str:
        return (await self.page.locator(selector).inner_text()).strip()


def number(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


async def test_every_page_shows_the_databases_figures(
    browser: Browser, dash_settings: Callable[..., Settings], db_url: str, conn: psycopg.Connection[Any],
    test_output: Path,
) -> None:  # fmt: skip
    settings = dash_settings()
    seeded = seed(conn, settings.config.crm.profiles_dir, settings.SESSION_FILE)
    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    watched = Watched(await context.new_page())
    with serve(settings, db_url) as base:
        # overview: grid statuses and the operator's actions
        await watched.visit(base + "/dashboard", test_output / "overview.png")
        grid = watched.page.locator("[data-testid=grid]")
        cell = lambda store, p: grid.locator(f"tr[data-store='{store}'] td[data-pipeline='{p}']")  # noqa: E731
        assert await cell("td_a668", "crm_ingest").get_attribute("data-status") == "ok"
        assert await cell("td_a817", "crm_download").get_attribute("data-status") == "bootstrap"
        assert await cell("uc_UC567", "crm_ingest").get_attribute("data-status") == "failing"
        assert await cell("hallmark", "hallmark").get_attribute("data-status") == "failing"
        assert await cell("esl_S1", "esl").get_attribute("data-status") == "failing"
        assert await cell("esl_S2", "esl").get_attribute("data-status") == "lagging"
        todo = await watched.text("ol.todo")
        assert "re-bootstrap: crm_download bootstrap --crm td --store a817" in todo
        assert "missing column: Invoice Date" in todo
        assert await watched.text("[data-testid=count-bootstrap]") == "1"
        await cell("td_a817", "crm_download").locator("text=details").click()
        await watched.page.wait_for_url(lambda url: url.endswith("/dashboard/crm?store=td_a817"))
        assert "session expired" in await watched.text("[data-testid=failures]")

        # CRM: totals equal the audit table, filters narrow them
        await watched.visit(base + "/dashboard/crm", test_output / "crm.png")
        totals = one(
            conn, "SELECT count(*) AS runs, sum(inserted_rows) AS ins, sum(updated_rows) AS upd FROM ingest_audit"
        )
        assert number(await watched.text("[data-testid=ingest-runs]")) == totals["runs"]
        assert number(await watched.text("[data-testid=rows-inserted]")) == totals["ins"]
        assert number(await watched.text("[data-testid=rows-updated]")) == totals["upd"]
        fact = conn.execute("SELECT count(*) AS n FROM fact_td_orders").fetchone()
        assert fact is not None and number(await watched.text("[data-testid=fact_td_orders]")) == fact["n"]
        assert "missing column: Invoice Date" in await watched.text("[data-testid=failures]")
        await watched.page.select_option("select[name=store]", "td_a817")
        await watched.page.click("form.filters button[type=submit]")
        await watched.page.wait_for_url(lambda url: "store=td_a817" in url)
        await watched.page.screenshot(path=str(test_output / "crm-filtered.png"), full_page=True)
        n = conn.execute("SELECT count(*) AS n FROM ingest_audit WHERE crm = 'td' AND store = 'a817'").fetchone()
        assert n is not None and number(await watched.text("[data-testid=ingest-runs]")) == n["n"]
        assert "session expired" in await watched.text("[data-testid=failures]")
        assert "Invoice Date" not in await watched.text("[data-testid=failures]")

        # Hallmark: runs and imported totals
        await watched.visit(base + "/dashboard/hallmark", test_output / "hallmark.png")
        grand = one(conn, "SELECT count(*) AS n, sum(order_total) AS total FROM orders")
        assert number(await watched.text("[data-testid=orders]")) == grand["n"]
        assert number(await watched.text("[data-testid=order-total]")) == grand["total"]
        runs = conn.execute("SELECT count(*) AS n FROM hallmark_runs").fetchone()
        assert runs is not None and await watched.page.locator("[data-testid=runs-table] tbody tr").count() == runs["n"]
        stores = one(conn, "SELECT count(DISTINCT store_number) AS n FROM orders")
        assert await watched.page.locator("[data-testid=totals] tbody tr").count() == stores["n"]
        for r in conn.execute(
            "SELECT to_char(order_creation_date, 'YYYY-MM') AS m, sum(order_total) AS t FROM orders GROUP BY 1"
        ).fetchall():
            shown = (await watched.text(f"[data-testid=totals] tfoot th[data-month='{r['m']}']")).split()[0]
            assert number(shown) == r["t"]

        # ESL: queue counts by state, dead letters, webhooks
        await watched.visit(base + "/dashboard/esl", test_output / "esl.png")
        for r in conn.execute("SELECT state, count(*) AS n FROM sync_queue GROUP BY state").fetchall():
            assert number(await watched.text(f"[data-testid=queue-{r['state']}]")) == r["n"]
        assert await watched.page.locator(f"[data-testid=dead] tr[data-item='{seeded['dead_id']}']").count() == 1
        for r in conn.execute("SELECT outcome, count(*) AS n FROM webhook_inbox GROUP BY outcome").fetchall():
            assert number(await watched.text(f"[data-testid=webhooks-{r['outcome']}]")) == r["n"]
        reasons = await watched.text("[data-testid=webhook-reasons]")
        assert "no active mapping" in reasons and "malformed JSON" in reasons
        by_store = await watched.text("[data-testid=by-store]")
        assert "S1" in by_store and "S2" in by_store
        assert "min" in await watched.text("[data-testid=oldest-pending]")
        # shops: subscriptions and reconciliation (a non-zero drift: webhooks were lost)
        assert await watched.page.locator("[data-testid=shops] tbody tr").count() == 2
        alpha = "[data-testid='subscriptions-alpha.myshopify.com']"
        assert await watched.page.locator(alpha).get_attribute("data-status") == "stale"
        assert "re-created" in await watched.text(alpha) and "products/update" in await watched.text(alpha)
        assert await watched.text("[data-testid='drift-alpha.myshopify.com']") == "3"
        assert await watched.text("[data-testid='drift-beta.myshopify.com']") == "—"
        beta = "[data-testid='subscriptions-beta.myshopify.com']"
        assert await watched.page.locator(beta).get_attribute("data-status") == "never"
        synced = conn.execute("SELECT count(*) AS n FROM sync_log WHERE status = 'succeeded'").fetchone()
        assert synced is not None and number(await watched.text("[data-testid=latency-count]")) == synced["n"]

        # Sessions: every stored file, with its last check
        await watched.visit(base + "/dashboard/sessions", test_output / "sessions.png")
        rows = watched.page.locator("[data-testid=sessions] tbody tr")
        assert await rows.count() >= 4  # hallmark + three configured CRM stores
        assert "invalid" in await watched.page.locator("tr[data-session='td_a817']").inner_text()
        assert "valid" in await watched.page.locator("tr[data-session='td_a668']").inner_text()
        assert "no file" in await watched.page.locator("tr[data-session='uc_UC567']").inner_text()

        # Charts: per-store totals equal the fact tables
        await watched.visit(base + "/dashboard/charts", test_output / "charts.png")
        td = one(conn, "SELECT sum(net_amount) AS s FROM fact_td_orders WHERE store_code = 'a668'")
        assert number(await watched.text("[data-store='td_a668']")) == td["s"]
        assert await watched.page.locator("svg.chart").count() == 3
        synced = conn.execute("SELECT count(*) AS n FROM sync_log WHERE status = 'succeeded'").fetchone()
        assert synced is not None and number(await watched.text("[data-testid=latency-count]")) == synced["n"]
        assert number(await watched.text("[data-testid=throughput-total]")) == synced["n"]
    await context.close()


async def test_retry_button_reenqueues_a_dead_letter(
    browser: Browser, dash_settings: Callable[..., Settings], db_url: str, conn: psycopg.Connection[Any],
    test_output: Path,
) -> None:  # fmt: skip
    settings = dash_settings()
    seeded = seed(conn, settings.config.crm.profiles_dir, settings.SESSION_FILE)
    dead_id = seeded["dead_id"]
    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    watched = Watched(await context.new_page())
    with serve(settings, db_url) as base:
        await watched.visit(base + "/dashboard/esl", test_output / "esl-before-retry.png")
        await watched.page.click(f"[data-testid=retry-{dead_id}]")
        await watched.page.wait_for_url(lambda url: url.endswith("/dashboard/esl?retried=1"))
        await watched.page.screenshot(path=str(test_output / "esl-after-retry.png"), full_page=True)
        assert "Re-enqueued 1 dead letter" in await watched.text("[data-testid=retried]")
        assert await watched.page.locator(f"[data-testid=dead] tr[data-item='{dead_id}']").count() == 0
        assert watched.problems == []
    row = conn.execute("SELECT state, attempts, reason FROM sync_queue WHERE id = %s", (dead_id,)).fetchone()
    assert row is not None and (row["state"], row["attempts"], row["reason"]) == ("pending", 0, "retry")
    await context.close()


async def test_pages_of_a_migrated_database_without_data_say_no_data_yet(
    browser: Browser, dash_settings: Callable[..., Settings], db_url: str, test_output: Path
) -> None:
    # every served database is migrated (open_database migrates), so "empty" means no rows, not no tables
    settings = dash_settings()
    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    watched = Watched(await context.new_page())
    with serve(settings, db_url) as base:
        for path in PAGES:
            name = path.rsplit("/", 1)[-1]
            await watched.visit(base + path, test_output / f"empty-{name}.png")
            if path != "/dashboard/sessions":
                assert await watched.page.locator("[data-testid=empty]").count() >= 1, path
            assert "No data yet" in await watched.page.inner_text("main") or path in {"/dashboard",
                                                                                   "/dashboard/sessions"}  # fmt: skip
        metrics = httpx.get(base + "/metrics").text
    assert "storeflow_up 1.0" in metrics
    await context.close()


async def test_login_is_enforced_off_loopback(
    browser: Browser, dash_settings: Callable[..., Settings], db_url: str, conn: psycopg.Connection[Any],
    test_output: Path,
) -> None:  # fmt: skip
    settings = dash_settings(DASHBOARD_USERNAME="ops", DASHBOARD_PASSWORD="correct-horse-42")
    seed(conn, settings.config.crm.profiles_dir, settings.SESSION_FILE)
    context = await browser.new_context(viewport={"width": 1360, "height": 900})
    watched = Watched(await context.new_page())
    with serve(settings, db_url, bound_host="0.0.0.0") as base:
        with httpx.Client(base_url=base, follow_redirects=False) as client:
            for path in (*PAGES, "/dashboard/esl/retry", "/dashboard/jobs/retry"):
                html = client.get(path, headers={"accept": "text/html"})
                assert html.status_code in {303, 401, 405}, path
                assert "Uttam Nagar" not in html.text and "alpha.myshopify.com" not in html.text
                if html.status_code == 303:
                    assert html.headers["location"].startswith("/dashboard/login")
                assert client.get(path).status_code in {401, 405}, path
            assert client.post("/dashboard/esl/retry", data={"csrf": "x"}).status_code == 401
            assert client.get("/metrics").status_code == 401
            assert client.get("/metrics", auth=("ops", "correct-horse-42")).status_code == 200
        # the browser lands on the login page, a wrong password is refused, the right one leads back
        response = await watched.page.goto(base + "/dashboard/esl")
        assert response is not None and "/dashboard/login" in watched.page.url
        await watched.page.screenshot(path=str(test_output / "login.png"), full_page=True)
        await watched.page.fill("input[name=username]", "ops")
        await watched.page.fill("input[name=password]", "wrong")
        await watched.page.click("button[type=submit]")
        await watched.page.wait_for_url(lambda url: "/dashboard/login" in url and "failed=1" in url)
        assert "Wrong user name or password" in await watched.page.inner_text("main")
        await watched.page.fill("input[name=username]", "ops")
        await watched.page.fill("input[name=password]", "correct-horse-42")
        await watched.page.click("button[type=submit]")
        await watched.page.wait_for_url("**/dashboard/esl")
        assert "Dead letters" in await watched.page.inner_text("main")
        await watched.page.click("text=log out ops")
        await watched.page.wait_for_url("**/dashboard/login")
        response = await watched.page.goto(base + "/dashboard")
        assert "/dashboard/login" in watched.page.url
        assert watched.problems == []
    await context.close()


async def test_metrics_equal_the_database(
    dash_settings: Callable[..., Settings], db_url: str, conn: psycopg.Connection[Any]
) -> None:
    settings = dash_settings()
    seed(conn, settings.config.crm.profiles_dir, settings.SESSION_FILE)
    with serve(settings, db_url) as base:
        response = httpx.get(base + "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("storeflow_up") == 1
    for r in conn.execute("SELECT state, count(*) AS n FROM sync_queue GROUP BY state").fetchall():
        assert value("storeflow_sync_queue_items", state=r["state"]) == r["n"]
    for r in conn.execute("SELECT outcome, reason, count(*) AS n FROM webhook_inbox WHERE outcome <> 'enqueued'"
                          " GROUP BY 1, 2").fetchall():  # fmt: skip
        kind = r["reason"].replace("#79", "#")  # ids are folded out of label values
        assert value("storeflow_webhooks_rejected_total", outcome=r["outcome"], reason=kind) == r["n"]
    for r in conn.execute("SELECT crm, store, status, count(*) AS n, sum(inserted_rows) AS ins FROM ingest_audit"
                          " GROUP BY 1, 2, 3").fetchall():  # fmt: skip
        key = f"{r['crm']}_{r['store']}"
        assert value("storeflow_crm_ingests_total", crm=r["crm"], store=key, status=r["status"]) == r["n"]
    ins = one(conn, "SELECT sum(inserted_rows) AS n FROM ingest_audit WHERE store = 'a668'")
    assert value("storeflow_crm_rows_ingested_total", crm="td", store="td_a668", kind="inserted") == ins["n"]
    synced = conn.execute("SELECT count(*) AS n FROM sync_log WHERE status = 'succeeded'").fetchone()
    assert synced is not None and value("storeflow_sync_latency_seconds_count") == synced["n"]
    assert value("storeflow_sync_latency_seconds_bucket", le="0.05") == 1  # the 30 ms one
    assert value("storeflow_sync_latency_seconds_bucket", le="0.5") == 3
    assert value("storeflow_sync_latency_seconds_sum") == pytest.approx(0.03 + 0.2 + 0.4 + 1.5 + 7)
    assert value("storeflow_sync_attempts_total", store="S1", status="succeeded") == synced["n"]
    assert value("storeflow_store_status", pipeline="crm_download", store="td_a817", status="bootstrap") == 1
    assert value("storeflow_session_valid", session="td_a817") == 0
    assert value("storeflow_sync_queue_oldest_pending_age_seconds") > 600


async def test_an_unreachable_database_is_a_503_with_the_reason(dash_settings: Callable[..., Settings]) -> None:
    settings = dash_settings()
    with serve(settings, "postgresql://postgres@127.0.0.1:1/nowhere", db_timeout=1) as base:
        page = httpx.get(base + "/dashboard/esl", timeout=30)
        metrics = httpx.get(base + "/metrics", timeout=30)
    assert page.status_code == 503 and "database unavailable" in page.text
    assert metrics.status_code == 200 and "storeflow_up 0.0" in metrics.text
