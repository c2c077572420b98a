"""The webhook receiver against a real PostgreSQL and a real server on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from storeflow.sandbox.shopify import shopify_dumps
from storeflow.sandbox.shopify import sign_webhook as sign_body

from .conftest import SHOP, Esl

pytestmark = pytest.mark.integration

BIG = 2**53 + 12345  # above 2^53: a float would change the last digits


def product(
    pid: int = BIG,
    price: str = "19.90",
    updated_at: str = "2026-01-05T10:00:00-05:00",
    variants: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": pid,
        "title": "Classic Mug",
        "updated_at": updated_at,
        "images": [
            {"id": pid + 1, "position": 1, "src": "https://cdn.shopify.com/s/files/1/mug.jpg", "variant_ids": []}
        ],
        "variants": variants
        or [
            {
                "id": pid + 100,
                "title": "Default Title",
                "price": price,
                "sku": "MUG-1",
                "barcode": "4006381333931",
                "inventory_item_id": pid + 200,
            }
        ],
        **extra,
    }


def rows(esl: Esl, query: str, *params: Any) -> list[dict[str, Any]]:
    with esl.connect() as conn:
        return conn.execute(query, params).fetchall()


def count(esl: Esl, table: str) -> int:
    return int(rows(esl, f"SELECT count(*) AS n FROM {table}")[0]["n"])


def test_valid_hmac_is_stored_and_enqueued_in_one_go(esl: Esl) -> None:
    esl.add_mapping()
    response = esl.post("products/create", shopify_dumps(product()))
    assert response.status_code == 200
    assert response.json()["outcome"] == "enqueued" and response.json()["enqueued"] == 1
    inbox = rows(esl, "SELECT * FROM webhook_inbox")
    assert len(inbox) == 1 and inbox[0]["outcome"] == "enqueued"
    assert inbox[0]["headers"]["x-shopify-topic"] == "products/create"
    stored = rows(esl, "SELECT * FROM products")[0]
    assert stored["source_id"] == str(BIG) and stored["source_variant_id"] == str(BIG + 100)
    assert stored["inventory_item_id"] == str(BIG + 200)
    assert (stored["pc"], stored["pn"], stored["pp"], stored["pi"]) == (
        "4006381333931",
        "Classic Mug",
        "19.90",
        "MUG-1",
    )
    queue = rows(esl, "SELECT * FROM sync_queue")
    assert [(q["state"], q["operation"], q["inbox_id"]) for q in queue] == [("pending", "upsert", inbox[0]["id"])]


@pytest.mark.parametrize(
    ("signature", "why"),
    [(None, "missing"), ("AAAA" + "=" * 40, "wrong"), ("tampered", "tampered body")],
)
def test_bad_hmac_is_refused_and_nothing_is_stored(esl: Esl, signature: str | None, why: str) -> None:
    esl.add_mapping()
    body = shopify_dumps(product())
    if signature == "tampered":
        signature = sign_body(esl.secret, body)
        body = body.replace(b"19.90", b"0.01")
    response = esl.post("products/create", body, hmac=signature)
    assert response.status_code == 401, why
    assert count(esl, "webhook_inbox") == 0 and count(esl, "products") == 0 and count(esl, "sync_queue") == 0


def test_escaped_slashes_verify_over_raw_bytes(esl: Esl) -> None:
    esl.add_mapping()
    body = shopify_dumps(product())
    assert b"https:\\/\\/cdn.shopify.com" in body
    reserialised = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert sign_body(esl.secret, reserialised) != sign_body(esl.secret, body)
    response = esl.post("products/create", body)
    assert response.status_code == 200 and response.json()["outcome"] == "enqueued"
    assert rows(esl, "SELECT pim FROM products")[0]["pim"] == "https://cdn.shopify.com/s/files/1/mug.jpg"
    assert bytes(rows(esl, "SELECT raw_body FROM webhook_inbox")[0]["raw_body"]) == body


def test_unknown_shop_is_acknowledged_and_recorded_as_ignored(esl: Esl) -> None:
    esl.add_mapping()
    response = esl.post("products/create", shopify_dumps(product()), shop="stranger.myshopify.com")
    assert response.status_code == 200 and response.json()["outcome"] == "ignored"
    inbox = rows(esl, "SELECT outcome, reason FROM webhook_inbox")
    assert inbox == [{"outcome": "ignored", "reason": "no active store mapping for shop stranger.myshopify.com"}]
    assert count(esl, "sync_queue") == 0


def test_deactivated_mapping_ignores_the_shop(esl: Esl) -> None:
    mapping_id = esl.add_mapping()
    assert (
        httpx.delete(f"{esl.app_url}/api/store-mappings/{mapping_id}", headers=esl.api_headers).json()["is_active"]
        is False
    )
    assert esl.post("products/create", shopify_dumps(product())).json()["outcome"] == "ignored"


def test_duplicate_delivery_is_enqueued_once(esl: Esl) -> None:
    esl.add_mapping()
    body = shopify_dumps(product())
    first = esl.post("products/create", body, event_id="ev-1")
    again = esl.post("products/create", body, event_id="ev-1")
    assert first.status_code == again.status_code == 200
    assert again.json()["outcome"] == "duplicate" and again.json()["enqueued"] == 0
    assert count(esl, "sync_queue") == 1
    assert [r["outcome"] for r in rows(esl, "SELECT outcome FROM webhook_inbox ORDER BY id")] == [
        "enqueued",
        "duplicate",
    ]


def test_duplicate_falls_back_to_webhook_id(esl: Esl) -> None:
    esl.add_mapping()
    body = shopify_dumps(product())
    headers = {"X-Shopify-Event-Id": "", "X-Shopify-Webhook-Id": "wh-same"}
    assert esl.post("products/create", body, **headers).json()["outcome"] == "enqueued"
    assert esl.post("products/create", body, **headers).json()["outcome"] == "duplicate"
    assert count(esl, "sync_queue") == 1


def test_out_of_order_update_never_overwrites_newer_data(esl: Esl) -> None:
    esl.add_mapping()
    newer = shopify_dumps(product(price="25.00", updated_at="2026-01-05T10:05:00-05:00"))
    older = shopify_dumps(product(price="20.00", updated_at="2026-01-05T10:01:00-05:00"))
    assert esl.post("products/update", newer).json()["outcome"] == "enqueued"
    late = esl.post("products/update", older).json()
    assert late["outcome"] == "stale" and late["enqueued"] == 0
    assert rows(esl, "SELECT pp FROM products")[0]["pp"] == "25.00"
    esl.drain()
    assert esl.labels()["4006381333931"]["pp"] == "25.00"


def test_unchanged_update_sends_nothing_again(esl: Esl) -> None:
    esl.add_mapping()
    assert esl.post("products/create", shopify_dumps(product())).json()["enqueued"] == 1
    same = esl.post("products/update", shopify_dumps(product(updated_at="2026-01-05T10:09:00-05:00"))).json()
    assert same["outcome"] == "unchanged" and count(esl, "sync_queue") == 1


def test_delete_removes_every_variant_from_the_labels(esl: Esl) -> None:
    esl.add_mapping()
    variants = [
        {"id": BIG + 100 + i, "title": f"Size {i}", "price": "5.00", "barcode": f"B{i}", "sku": None} for i in range(3)
    ]
    esl.post("products/create", shopify_dumps(product(variants=variants)))
    esl.drain()
    assert set(esl.labels()) == {"B0", "B1", "B2"}
    assert esl.labels()["B1"]["pn"] == "Classic Mug - Size 1"
    response = esl.post("products/delete", shopify_dumps({"id": BIG}))
    assert response.json()["outcome"] == "enqueued" and response.json()["enqueued"] == 3
    esl.drain()
    assert esl.labels() == {}
    assert esl.sim.calls["del_multiple"] == 1
    assert {r["status"] for r in rows(esl, "SELECT status FROM products")} == {"deleted"}
    assert count(esl, "hipoink_products") == 0


def test_delete_before_create_keeps_the_product_away(esl: Esl) -> None:
    esl.add_mapping()
    assert esl.post("products/delete", shopify_dumps({"id": BIG})).json()["outcome"] == "stored"
    assert esl.post("products/create", shopify_dumps(product())).json()["outcome"] == "stale"
    assert count(esl, "sync_queue") == 0


def test_variant_dropped_by_an_update_is_removed(esl: Esl) -> None:
    esl.add_mapping()
    two = [
        {"id": BIG + 100, "title": "Red", "price": "5.00", "barcode": "R", "sku": None},
        {"id": BIG + 101, "title": "Blue", "price": "5.00", "barcode": "B", "sku": None},
    ]
    esl.post("products/create", shopify_dumps(product(variants=two)))
    esl.drain()
    reply = esl.post("products/update", shopify_dumps(product(variants=two[:1], updated_at="2026-01-05T16:00:00Z")))
    assert "1 variant(s) removed" in reply.json()["reason"]
    esl.drain()
    assert set(esl.labels()) == {"R"}


def test_inventory_update_sent_only_with_a_stock_field(esl: Esl) -> None:
    mapping_id = esl.add_mapping()
    esl.post("products/create", shopify_dumps(product()))
    level = {
        "inventory_item_id": BIG + 200,
        "location_id": BIG + 9,
        "available": 7,
        "updated_at": "2026-01-05T12:00:00Z",
    }
    reply = esl.post("inventory_levels/update", shopify_dumps(level)).json()
    assert reply["outcome"] == "stored" and "stock field" in reply["reason"]
    assert rows(esl, "SELECT stock FROM products")[0]["stock"] == 7
    httpx.put(
        f"{esl.app_url}/api/store-mappings/{mapping_id}", json={"stock_field": "f1"}, headers=esl.api_headers
    ).raise_for_status()
    level.update(available=3, updated_at="2026-01-05T12:01:00Z")
    assert esl.post("inventory_levels/update", shopify_dumps(level)).json()["outcome"] == "enqueued"
    esl.drain()
    assert esl.labels()["4006381333931"]["f1"] == "3"


def test_inventory_for_an_unknown_item_is_unmatched_and_older_levels_are_stale(esl: Esl) -> None:
    esl.add_mapping(stock_field="f2")
    level = {"inventory_item_id": BIG + 999, "location_id": 1, "available": 4, "updated_at": "2026-01-05T12:00:00Z"}
    assert esl.post("inventory_levels/update", shopify_dumps(level)).json()["outcome"] == "unmatched"
    level.update(available=9, updated_at="2026-01-05T11:00:00Z")
    assert esl.post("inventory_levels/update", shopify_dumps(level)).json()["outcome"] == "stale"
    # the level was kept: a product created later starts with it
    variant = {
        "id": BIG + 100,
        "title": "Default Title",
        "price": "1.00",
        "barcode": "X1",
        "inventory_item_id": BIG + 999,
    }
    esl.post("products/create", shopify_dumps(product(variants=[variant])))
    assert rows(esl, "SELECT stock FROM products")[0]["stock"] == 4


def test_oversized_body_is_refused_with_413(esl: Esl) -> None:
    esl.add_mapping()
    body = shopify_dumps(product(body_html="x" * (1024 * 1024)))
    assert esl.post("products/create", body).status_code == 413
    assert count(esl, "webhook_inbox") == 0


def test_oversized_chunked_body_without_a_length_is_refused_with_413(esl: Esl) -> None:
    esl.add_mapping()
    body = shopify_dumps(product(body_html="x" * (1024 * 1024)))
    headers = {
        "X-Shopify-Topic": "products/create",
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-Hmac-Sha256": sign_body(esl.secret, body),
    }
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))  # no Content-Length: chunked
    response = httpx.post(f"{esl.app_url}/webhooks/shopify/products/create", content=chunks, headers=headers)
    assert response.status_code == 413
    assert count(esl, "webhook_inbox") == 0


def test_a_sender_hanging_up_mid_body_stores_nothing(esl: Esl) -> None:
    import socket
    from urllib.parse import urlsplit

    esl.add_mapping()
    body = shopify_dumps(product())
    url = urlsplit(esl.app_url)
    head = (
        f"POST /webhooks/shopify/products/create HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Content-Length: {len(body)}\r\nX-Shopify-Shop-Domain: {SHOP}\r\n"
        f"X-Shopify-Hmac-Sha256: {sign_body(esl.secret, body)}\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(head.encode() + body[: len(body) // 2])
    assert esl.post("products/create", body).json()["outcome"] == "enqueued"  # the server is fine
    assert count(esl, "webhook_inbox") == 1


def test_the_router_alone_answers_like_the_fast_path(esl: Esl, db_url: str) -> None:
    """An app that includes only the router (no WebhookFastPath) takes webhooks through FastAPI alike."""
    from fastapi import FastAPI

    from storeflow.db.connect import Database
    from storeflow.esl.api import router
    from storeflow.web.server import serve_in_thread

    esl.add_mapping()
    app = FastAPI()
    app.state.settings, app.state.db = esl.settings, Database(db_url, kind="test")
    app.include_router(router)
    body = shopify_dumps(product())
    with serve_in_thread(app) as url:
        plain = Esl(esl.settings, db_url, url, esl.hipoink_url, esl.sim, esl.secret)
        first = plain.post("products/create", body, event_id="ev-plain")
        again = esl.post("products/create", body, event_id="ev-plain")
        too_big = plain.post("products/create", shopify_dumps(product(body_html="x" * (1024 * 1024))))
        refused = plain.post("products/create", body, hmac="bm90IGl0")
    app.state.db.close()
    assert first.status_code == 200 and first.json()["outcome"] == "enqueued"
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    assert (too_big.status_code, refused.status_code) == (413, 401)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"id": 1, "variants": [', "malformed JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"id": 1.8014398509481984e16, "variants": []}', "float"),
        (b'{"id": 5, "updated_at": "2026-01-05T10:00:00Z", "variants": []}', "no variants"),
        (b"\xff\xfe not utf-8", "malformed JSON"),
    ],
)
def test_malformed_or_invalid_payload_is_recorded_never_a_5xx(esl: Esl, body: bytes, reason: str) -> None:
    esl.add_mapping()
    response = esl.post("products/update", body)
    assert response.status_code == 200 and response.json()["outcome"] == "invalid"
    recorded = rows(esl, "SELECT outcome, reason, raw_body FROM webhook_inbox")[0]
    assert reason in recorded["reason"] and bytes(recorded["raw_body"]) == body


def test_invalid_variant_is_not_sent_and_its_log_row_says_why(esl: Esl) -> None:
    esl.add_mapping()
    variants = [
        {"id": BIG + 100, "title": "Good", "price": "3.50", "barcode": "G1"},
        {"id": BIG + 101, "title": "Bad", "price": "three", "barcode": "B1"},
    ]
    reply = esl.post("products/create", shopify_dumps(product(variants=variants))).json()
    assert reply["outcome"] == "enqueued" and reply["enqueued"] == 1 and "1 variant(s) invalid" in reply["reason"]
    log = rows(esl, "SELECT status, product_code, error FROM sync_log")
    assert log == [{"status": "invalid", "product_code": "B1", "error": "pp: price 'three' is not a decimal number"}]
    esl.drain()
    assert set(esl.labels()) == {"G1"}


def test_pc_fallback_order_per_mapping(esl: Esl) -> None:
    esl.add_mapping()
    esl.add_mapping(shop="strict.myshopify.com", store="002", pc_fallback=["barcode"])
    variants = [
        {"id": BIG + 100, "title": "A", "price": "1", "barcode": None, "sku": "SKU-A"},
        {"id": BIG + 101, "title": "B", "price": "1", "barcode": "  ", "sku": ""},
        {"id": BIG + 102, "title": "C", "price": "1", "barcode": "EAN-C", "sku": "SKU-C"},
    ]
    body = shopify_dumps(product(variants=variants))
    esl.post("products/create", body)
    stored = {
        r["source_variant_id"]: r["pc"] for r in rows(esl, "SELECT * FROM products WHERE source_store_id = %s", SHOP)
    }
    assert stored == {str(BIG + 100): "SKU-A", str(BIG + 101): str(BIG + 101), str(BIG + 102): "EAN-C"}
    esl.post("products/create", body, shop="strict.myshopify.com")
    errors = rows(esl, "SELECT product_code, error FROM sync_log WHERE store_code = '002' ORDER BY product_id")
    assert [e["error"] for e in errors] == ["pc: no product code (barcode all empty)"] * 2
    esl.drain()
    assert set(esl.labels()) == {"SKU-A", str(BIG + 101), "EAN-C"}
    assert set(esl.labels("002")) == {"EAN-C"}


def test_one_url_for_every_topic_uses_the_topic_header(esl: Esl) -> None:
    esl.add_mapping()
    body = shopify_dumps({"id": BIG})
    headers = {
        "X-Shopify-Topic": "products/delete",
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-Event-Id": "ev-x",
        "X-Shopify-Hmac-Sha256": sign_body(esl.secret, body),
    }
    response = httpx.post(f"{esl.app_url}/webhooks/shopify/products/create", content=body, headers=headers)
    assert response.json()["outcome"] == "stored"
    assert rows(esl, "SELECT topic FROM webhook_inbox")[0]["topic"] == "products/delete"


def test_concurrent_duplicates_and_a_burst_share_commits_but_not_outcomes(esl: Esl) -> None:
    import asyncio

    from storeflow.sandbox.shopify import Delivery, build_deliveries, send_deliveries

    esl.add_mapping()
    plan = build_deliveries("products/create", 40, esl.secret, SHOP, seed=11)
    same = plan.deliveries[0]
    burst = [Delivery(same.topic, same.body, dict(same.headers), 0) for _ in range(15)] + plan.deliveries[1:]
    result = asyncio.run(send_deliveries(burst, esl.app_url, concurrency=32))
    assert result.statuses == {200: len(burst)}
    outcomes = {r["outcome"]: r["n"] for r in rows(esl, "SELECT outcome, count(*) AS n FROM webhook_inbox GROUP BY 1")}
    assert outcomes == {"enqueued": 40, "duplicate": 14}
    first = rows(
        esl,
        "SELECT count(*) AS n FROM sync_queue q JOIN webhook_inbox w ON w.id = q.inbox_id WHERE w.event_id = %s",
        same.headers["X-Shopify-Event-Id"],
    )
    assert first[0]["n"] == len(json.loads(same.body)["variants"])


def test_a_webhook_the_database_cannot_store_gets_503_so_shopify_retries(esl: Esl) -> None:
    esl.add_mapping()
    with esl.connect() as conn:
        conn.execute("ALTER FUNCTION esl_ingest_webhook(jsonb, bytea, text, jsonb) RENAME TO esl_ingest_broken")
    response = esl.post("products/create", shopify_dumps(product()), event_id="ev-retry")
    assert response.status_code == 503
    assert count(esl, "webhook_inbox") == 0 and count(esl, "products") == 0
    with esl.connect() as conn:
        conn.execute("ALTER FUNCTION esl_ingest_broken(jsonb, bytea, text, jsonb) RENAME TO esl_ingest_webhook")
    again = esl.post("products/create", shopify_dumps(product()), event_id="ev-retry")
    assert again.status_code == 200 and again.json()["outcome"] == "enqueued"


def test_a_products_variants_are_found_by_index_not_by_walking_the_shop(esl: Esl) -> None:
    """The per-delivery lookup of one product's variants (dropped variants, products/delete) must not
    walk every product of the shop, whatever the planner knows of the table (generic plan, no ANALYZE)."""
    mapping = esl.add_mapping()
    with esl.connect() as conn:
        conn.execute(
            "INSERT INTO products (store_mapping_id, source_store_id, source_id, source_variant_id, pc, pn, pp)"
            " SELECT %s, %s, (g / 3)::text, g::text, 'PC' || g, 'n', '1.00' FROM generate_series(1, 3000) g",
            (mapping, SHOP),
        )
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(
            "PREPARE variants(text, text) AS SELECT id FROM products"
            " WHERE source_system = 'shopify' AND source_store_id = $1 AND source_id = $2 AND status <> 'deleted'"
        )
        plan = "\n".join(r["QUERY PLAN"] for r in conn.execute("EXPLAIN EXECUTE variants('x', '7')").fetchall())
    assert "products_source_product_key" in plan, plan
