"""The Shopify sender's payloads and the store-mapping models (no I/O)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from storeflow.esl.models import StoreMappingIn, StoreMappingUpdate
from storeflow.esl.transform import parse_webhook, verify_hmac
from storeflow.sandbox.hipoink import product_problem, sandbox_sign, sandbox_webhook_secret
from storeflow.sandbox.shopify import build_deliveries, make_product, product_ids, shopify_dumps, webhook_url

SECRET = "shpss_sender"


def test_deliveries_are_signed_realistic_and_deterministic() -> None:
    plan = build_deliveries("products/create", 30, SECRET, seed=4)
    again = build_deliveries("products/create", 30, SECRET, seed=4)
    assert [d.body for d in plan.deliveries] == [d.body for d in again.deliveries]
    variants = []
    for delivery in plan.deliveries:
        assert verify_hmac(SECRET, delivery.body, delivery.headers["X-Shopify-Hmac-Sha256"])
        for header in (
            "X-Shopify-Topic",
            "X-Shopify-Shop-Domain",
            "X-Shopify-Webhook-Id",
            "X-Shopify-Event-Id",
            "X-Shopify-Triggered-At",
            "X-Shopify-API-Version",
        ):
            assert delivery.headers[header]
        data = json.loads(delivery.body)
        assert data["id"] > 2**53
        variants += data["variants"]
        assert parse_webhook("products/create", delivery.body).kind == "product"
    assert any(b"\\/" in d.body for d in plan.deliveries)
    assert any(len(json.loads(d.body)["variants"]) > 1 for d in plan.deliveries)
    barcodes = [v["barcode"] for v in variants]
    assert None in barcodes and "" in barcodes and any(b and b.strip() for b in barcodes)
    assert None in [v["sku"] for v in variants] and "" in [v["sku"] for v in variants]


def test_duplicates_repeat_ids_and_shuffle_sends_two_versions() -> None:
    plan = build_deliveries("products/update", 40, SECRET, seed=1, duplicates=0.5, shuffle=True)
    dups = [d for d in plan.deliveries if d.duplicate]
    assert dups
    originals = {d.headers["X-Shopify-Event-Id"] for d in plan.deliveries if not d.duplicate}
    assert all(d.headers["X-Shopify-Event-Id"] in originals for d in dups)
    versions: dict[int, list[str]] = {}
    for d in plan.deliveries:
        if not d.duplicate:
            versions.setdefault(d.product_index, []).append(json.loads(d.body)["updated_at"])
    assert all(len(v) == 2 for v in versions.values())
    assert any(v != sorted(v) for v in versions.values())  # some arrive newest first


def test_inventory_and_delete_talk_about_the_same_products() -> None:
    product = make_product(seed=2, index=3)
    inventory = build_deliveries("inventory_levels/update", 5, SECRET, seed=2, start=3).deliveries[0]
    assert json.loads(inventory.body)["inventory_item_id"] == product["variants"][0]["inventory_item_id"]
    delete = build_deliveries("products/delete", 1, SECRET, seed=2, start=3).deliveries[0]
    assert json.loads(delete.body) == {"id": product_ids(2, 3)["product_id"]}


def test_shopify_dumps_and_urls() -> None:
    assert shopify_dumps({"a": "x/y"}) == b'{"a":"x\\/y"}'
    assert webhook_url("http://h:1", "products/update") == "http://h:1/webhooks/shopify/products/update"
    assert webhook_url("http://h:1/webhooks/shopify", "products/update") == "http://h:1/webhooks/shopify"


def test_simulator_validation_and_secrets() -> None:
    assert product_problem({"pc": "1", "pn": "x", "pp": "1.00"}, "p") is None
    assert product_problem({"pn": "x", "pp": "1"}, "f1[0]") == "f1[0]: pc is required"
    assert product_problem({"pc": "1", "pn": "x", "pp": 1}, "p") == "p: pp must be a string"
    assert len(sandbox_sign(0)) == 16 and sandbox_sign(0) != sandbox_sign(1)
    assert sandbox_webhook_secret(3).startswith("shpss_")


def test_store_mapping_models() -> None:
    mapping = StoreMappingIn(source_store_id=" Shop.MyShopify.com ", hipoink_store_code=" 001 ")
    assert (mapping.source_store_id, mapping.hipoink_store_code) == ("shop.myshopify.com", "001")
    assert mapping.pc_fallback == ["barcode", "sku", "variant_id"]
    assert StoreMappingIn(source_store_id="s", hipoink_store_code="1", pc_fallback=["SKU"]).pc_fallback == ["sku"]
    for bad in (
        {"pc_fallback": ["upc"]},
        {"pc_fallback": []},
        {"pc_fallback": ["sku", "sku"]},
        {"stock_field": "pim"},
        {"stock_field": "color"},
        {"source_system": "woo"},
        {"extra": 1},
    ):
        with pytest.raises(ValidationError):
            StoreMappingIn(source_store_id="s", hipoink_store_code="1", **bad)  # type: ignore[arg-type]
    assert StoreMappingUpdate(stock_field="f3").changes() == {"stock_field": "f3"}
    assert StoreMappingUpdate().changes() == {}
