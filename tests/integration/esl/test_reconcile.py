"""Reconciliation against the shopify-admin simulator: real PostgreSQL, receiver, worker and Hipoink simulator."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from storeflow.esl.admin import AdminClient, AdminConfig
from storeflow.esl.reconcile import diff_products, remote_product
from storeflow.esl.reconcile_run import RunResult, apply_diff, reconcile_shop
from storeflow.esl.transform import normalise_price
from storeflow.sandbox.host import SandboxHost
from storeflow.sandbox.shopify import build_deliveries, drop_deliveries, send_deliveries, shopify_dumps
from storeflow.sandbox.shopify_admin import ShopifyAdminSimulator

from .conftest import SHOP, Esl
from .test_webhooks import rows

pytestmark = pytest.mark.integration
SEED = 5
PRODUCTS = 40
OUTAGE_BEGAN = datetime(2026, 1, 5, 8, 59, tzinfo=UTC)  # before the sender's first product (EPOCH)


@dataclass
class Admin:
    esl: Esl
    url: str
    sim: ShopifyAdminSimulator
    token: str
    http: httpx.Client

    def config(self, **overrides: Any) -> AdminConfig:
        values: dict[str, Any] = {
            "shop": SHOP,
            "base_url": self.url,
            "api_version": "2026-10",
            "token": self.token,
            "callback_base_url": self.esl.app_url,
            "overlap_seconds": 300.0,
            **overrides,
        }
        return AdminConfig(**values)

    def client(self, **overrides: Any) -> AdminClient:
        return AdminClient(self.http, self.config(**overrides))

    def reconcile(self, client: AdminClient | None = None, **kwargs: Any) -> RunResult:
        with psycopg.connect(self.esl.db_url, row_factory=dict_row) as conn:
            return reconcile_shop(conn, client or self.client(), **kwargs)

    def control(self, path: str, **body: Any) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/_sandbox/{path}", json={"shop": SHOP, **body}, timeout=30)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def expected_labels(self) -> dict[str, str]:
        """pc -> price for every live variant in Shopify (the mapping's default pc fallback)."""
        truth = httpx.get(f"{self.url}/_sandbox/truth", params={"shop": SHOP}).json()
        out = {}
        for v in truth["variants"]:
            barcode = (v["barcode"] or "").strip()
            sku = (v["sku"] or "").strip()
            pc = barcode if barcode and len(barcode) <= 64 else sku if sku and len(sku) <= 64 else v["variant_id"]
            out[pc] = normalise_price(v["price"])
        return out

    def labels(self) -> dict[str, str]:
        return {pc: p["pp"] for pc, p in self.esl.labels().items()}


@pytest.fixture
def admin(esl: Esl, sandbox: Callable[..., SandboxHost]) -> Iterator[Admin]:
    host = sandbox("shopify-admin", seed=SEED)
    url = host.urls["shopify-admin"]
    sim = host.sim("shopify-admin")
    assert isinstance(sim, ShopifyAdminSimulator)
    token = httpx.post(f"{url}/_sandbox/shops", json={"shop": SHOP, "products": PRODUCTS, "seed": SEED}).json()["token"]
    esl.add_mapping()
    with httpx.Client(timeout=30) as http:
        yield Admin(esl, url, sim, token, http)


def deliver(admin: Admin, topic: str, drop: float = 0.0) -> int:
    """Apply ``topic`` for every product to Shopify (the simulator) and send the webhooks of all but
    ``drop`` of them; returns how many were dropped."""
    plan = build_deliveries(topic, PRODUCTS, admin.esl.secret, SHOP, seed=SEED)
    if topic in ("products/create", "products/update"):
        admin.control("mutate", upsert=list(plan.latest.values()))
    sent, dropped = drop_deliveries(plan, drop, seed=SEED)
    result = asyncio.run(send_deliveries(sent, admin.esl.app_url, concurrency=8))
    assert result.statuses == {200: len(sent)}
    return len({d.product_index for d in dropped})


def test_incremental_then_full_after_lost_webhooks_and_silent_deletes(admin: Admin) -> None:
    dropped = deliver(admin, "products/create", drop=0.1) + deliver(admin, "products/update", drop=0.1)
    assert dropped >= 2
    gone = admin.control("mutate", delete_random=5)["deleted"]
    assert len(gone) == 5
    admin.esl.drain()
    assert admin.labels() != admin.expected_labels()

    incremental = admin.reconcile(since=OUTAGE_BEGAN)
    assert incremental.mode == "incremental" and incremental.created + incremental.updated > 0
    assert incremental.deleted == 0  # only a full listing reveals deletions
    admin.esl.drain()
    live = admin.expected_labels()
    assert {pc: pp for pc, pp in admin.labels().items() if pc in live} == live

    full = admin.reconcile(full=True)
    assert full.method == "bulk" and full.deleted >= 5 and full.created == full.updated == 0
    admin.esl.drain()
    assert admin.labels() == admin.expected_labels()

    runs = rows(admin.esl, "SELECT mode, status, method, deleted, cost_used FROM reconcile_runs ORDER BY id")
    assert [(r["mode"], r["status"], r["method"]) for r in runs] == [
        ("incremental", "succeeded", "pages"),
        ("full", "succeeded", "bulk"),
    ]
    assert runs[0]["cost_used"] > 0
    reasons = rows(admin.esl, "SELECT DISTINCT reason FROM sync_queue WHERE inbox_id IN"
                              " (SELECT id FROM webhook_inbox WHERE headers ? 'x-storeflow-source')")  # fmt: skip
    assert reasons == [{"reason": "reconcile"}]
    again = admin.reconcile(full=True)
    assert again.created == again.updated == again.deleted == 0 and again.unchanged > 0


def test_incremental_starts_at_the_high_water_mark(admin: Admin) -> None:
    deliver(admin, "products/create")
    admin.esl.drain()
    first = admin.reconcile(full=True)
    assert first.created == first.updated == 0 and first.high_water is not None
    changed = admin.control("mutate", change_prices=3)["changed"]
    result = admin.reconcile()
    assert result.since is not None and result.since < first.high_water
    assert result.updated >= 3 and result.products_seen < PRODUCTS
    admin.esl.drain()
    assert admin.labels() == admin.expected_labels()
    assert len(changed) == 3


def test_reconciliation_never_overwrites_a_newer_webhook(admin: Admin) -> None:
    deliver(admin, "products/create")
    admin.esl.drain()
    # Shopify (the listing) still shows version 1 while a webhook with version 2 already arrived
    older = build_deliveries("products/update", 2, admin.esl.secret, SHOP, seed=SEED, shuffle=True)
    v1 = next(d for d in older.deliveries if b'"updated_at":"2026-01-05T09:00:07' in d.body)
    v2 = next(d for d in older.deliveries if d is not v1 and d.product_index == v1.product_index)
    admin.control("mutate", upsert=[json.loads(v1.body)])
    assert admin.esl.post("products/update", v2.body).json()["outcome"] == "enqueued"
    query = "SELECT source_variant_id, pp, source_updated_at FROM products ORDER BY 1"
    before = rows(admin.esl, query)
    result = admin.reconcile(since=OUTAGE_BEGAN)
    assert result.skipped_newer >= 1
    assert rows(admin.esl, query) == before

    # the race inside one run: the listing was diffed before the webhook landed, then applied after it
    node = admin.client().query(
        "query($id: ID!) { product(id: $id) { id title status updatedAt featuredImage { url }"
        " variants(first: 10) { nodes { id title price sku barcode image { url } inventoryItem { id } } } } }",
        {"id": f"gid://shopify/Product/{json.loads(v1.body)['id']}"},
    )["product"]
    stale_diff = diff_products([], [remote_product(node)], full=False)
    assert stale_diff.count("create") >= 1
    with psycopg.connect(admin.esl.db_url, row_factory=dict_row) as conn:
        outcomes = apply_diff(conn, SHOP, 1, 0, "2026-10", stale_diff)
    assert outcomes.get("stale") == 1 and outcomes["items"] == 0
    assert rows(admin.esl, query) == before
    assert json.loads(shopify_dumps({"u": "a/b"})) == {"u": "a/b"}  # bodies carry Shopify's \/ escaping


def test_throttling_slows_but_completes(admin: Admin) -> None:
    admin.control("shops", products=PRODUCTS, seed=SEED, bucket_size=1000, restore_rate=400)
    deliver(admin, "products/create")
    admin.esl.drain()
    token = admin.sim.shops[SHOP].token
    admin.control("mutate", change_prices=10)
    client = admin.client(token=token)
    result = admin.reconcile(client, since=None)
    assert result.status == "succeeded" and result.updated >= 10
    state = httpx.get(f"{admin.url}/_sandbox/state").json()["shops"][SHOP]
    assert state["throttled"] == 0  # paced by throttleStatus: the bucket never ran dry


def test_throttled_answers_are_waited_out(admin: Admin) -> None:
    admin.control("shops", products=PRODUCTS, seed=SEED, bucket_size=1000, restore_rate=2000)
    token = admin.sim.shops[SHOP].token
    client = admin.client(token=token)
    bucket = admin.sim.shops[SHOP].bucket
    bucket.level, bucket.stamp = 0.0, time.monotonic()  # emptied by another app of the same shop
    pages = list(client.product_pages(None))
    assert sum(len(p) for p in pages) == PRODUCTS
    assert client.stats.throttled_retries >= 1
    assert httpx.get(f"{admin.url}/_sandbox/state").json()["shops"][SHOP]["throttled"] >= 1


def test_failed_bulk_operation_falls_back_to_pages(admin: Admin) -> None:
    deliver(admin, "products/create")
    admin.esl.drain()
    admin.control("mutate", delete_random=2)
    admin.control("bulk", fail_next="INTERNAL_SERVER_ERROR")
    result = admin.reconcile(full=True)
    assert result.method == "bulk->pages" and result.deleted >= 2 and result.pages >= 1
    admin.esl.drain()
    assert admin.labels() == admin.expected_labels()


def test_bulk_in_progress_is_waited_for(admin: Admin) -> None:
    deliver(admin, "products/create")
    admin.esl.drain()
    admin.control("bulk", start_other=True, seconds=0.6)
    result = admin.reconcile(full=True)
    assert result.method == "bulk" and result.created == result.deleted == 0


def test_dry_run_changes_nothing(admin: Admin) -> None:
    deliver(admin, "products/create", drop=0.2)
    before = rows(admin.esl, "SELECT count(*) AS n FROM sync_queue")
    result = admin.reconcile(full=True, dry_run=True)
    assert result.created > 0 and any(line.startswith("create") for line in result.changes)
    assert rows(admin.esl, "SELECT count(*) AS n FROM sync_queue") == before
    assert rows(admin.esl, "SELECT count(*) AS n FROM reconcile_runs") == [{"n": 0}]
