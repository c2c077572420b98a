"""What a verified delivery becomes before the SQL (issues 10 and 11): the body decides its topic,
everything PostgreSQL would refuse is normalised or refused here, keys fit an index. No I/O."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from storeflow.esl.api import WebhookSecrets
from storeflow.esl.transform import (
    DROP_HEADERS,
    body_hash,
    body_shape,
    bounded_key,
    header_time,
    parse_webhook,
    prepare_delivery,
    refused_delivery,
    scrub,
    topic_mismatch,
)

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
BIG = 2**53 + 1
PRODUCT = {"id": BIG, "title": "Mug", "updated_at": "2026-01-05T10:00:00Z", "variants": [{"id": BIG + 1, "price": "5"}]}
DELETE = {"id": BIG}
LEVEL = {"inventory_item_id": BIG + 2, "location_id": 7, "available": 3, "updated_at": "2026-01-05T10:00:00Z"}


@pytest.mark.parametrize(
    ("data", "shape"),
    [
        (PRODUCT, "product"),
        ({"id": BIG, "title": "Mug"}, "product"),  # a product without variants is still a product
        (DELETE, "delete"),
        ({"id": BIG, "admin_graphql_api_id": f"gid://shopify/Product/{BIG}"}, "delete"),
        (LEVEL, "inventory"),
        ({"id": BIG, "updated_at": "x"}, "unknown"),
        ({}, "unknown"),
    ],
)
def test_body_shape(data: dict[str, Any], shape: str) -> None:
    assert body_shape(data) == shape


@pytest.mark.parametrize(
    ("topic", "data", "found"),
    [
        ("products/delete", PRODUCT, "a product"),  # the replay that tombstoned a product
        ("products/delete", LEVEL, "an inventory level"),
        ("products/delete", {"id": BIG, "updated_at": "x"}, "fields besides the id"),
        ("products/create", DELETE, "only a product id"),
        ("products/update", LEVEL, "an inventory level"),
        ("inventory_levels/update", PRODUCT, "a product"),
        ("inventory_levels/update", DELETE, "only a product id"),
    ],
)
def test_a_body_of_another_topics_shape_is_a_mismatch(topic: str, data: dict[str, Any], found: str) -> None:
    reason = topic_mismatch(topic, data)
    assert reason is not None and reason.startswith(f"topic mismatch: {topic} ") and reason.endswith(found)
    parsed = parse_webhook(topic, json.dumps(data).encode(), NOW)
    assert (parsed.kind, parsed.mismatch, parsed.reason) == ("invalid", True, reason)


@pytest.mark.parametrize(
    ("topic", "data"),
    [
        ("products/create", PRODUCT),
        ("products/update", {"id": BIG, "updated_at": "2026-01-05T10:00:00Z"}),  # unknown: the field check says
        ("products/delete", DELETE),
        ("products/delete", {}),
        ("inventory_levels/update", LEVEL),
    ],
)
def test_a_body_of_its_topics_shape_is_no_mismatch(topic: str, data: dict[str, Any]) -> None:
    assert topic_mismatch(topic, data) is None
    assert not parse_webhook(topic, json.dumps(data).encode(), NOW).mismatch


def headers(**extra: str) -> dict[str, str]:
    return {
        "x-shopify-topic": "products/update",
        "x-shopify-shop-domain": "Shop-A.myshopify.com",
        "x-shopify-event-id": "ev-1",
        "x-shopify-webhook-id": "wh-1",
        "x-shopify-triggered-at": "2026-01-05T10:00:00.123456789Z",
        "x-shopify-hmac-sha256": "c2lnbmF0dXJl",
        "x-shopify-api-version": "2025-07",
        **extra,
    }


def product_body(**changes: Any) -> bytes:
    data = json.loads(json.dumps(PRODUCT))
    for key, value in changes.items():
        if key.startswith("variant_"):
            data["variants"][0][key.removeprefix("variant_")] = value
        else:
            data[key] = value
    return json.dumps(data).encode()


def storable(value: Any) -> bool:
    """No string (key or value) holds what PostgreSQL's text and jsonb refuse: a NUL, a lone surrogate."""
    if isinstance(value, str):
        return "\x00" not in value and re.search("[\ud800-\udfff]", value) is None
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(storable(v) for v in value)
    return True


def test_the_prepared_delivery_is_what_the_database_function_takes() -> None:
    body = product_body()
    prepared = prepare_delivery(headers(), body, "products/create", NOW)
    meta = prepared.delivery["meta"]
    assert (prepared.shop, prepared.topic) == ("shop-a.myshopify.com", "products/update")  # the header wins
    assert meta["dedupe_key"] == "ev-1" and meta["event_id"] == "ev-1" and meta["webhook_id"] == "wh-1"
    assert meta["body_hash"] == body_hash("shop-a.myshopify.com", "products/update", body)
    assert meta["triggered_at"] == "2026-01-05T10:00:00.123456+00:00"
    assert "x-shopify-hmac-sha256" not in meta["headers"] and meta["headers"]["x-shopify-event-id"] == "ev-1"
    assert DROP_HEADERS >= {"x-shopify-hmac-sha256", "authorization", "cookie"}
    assert prepared.delivery["kind"] == "product" and storable(prepared.delivery)
    no_event = prepare_delivery(headers(**{"x-shopify-event-id": " "}), body, None, NOW)
    assert no_event.delivery["meta"]["dedupe_key"] == "wh-1"


def test_the_body_hash_changes_with_shop_topic_and_body_but_not_with_event_ids() -> None:
    body = product_body()
    one = prepare_delivery(headers(), body, None, NOW).delivery["meta"]["body_hash"]
    assert (
        prepare_delivery(headers(**{"x-shopify-event-id": "ev-2"}), body, None, NOW).delivery["meta"]["body_hash"]
        == one
    )
    for changed in (
        prepare_delivery(headers(**{"x-shopify-topic": "products/create"}), body, None, NOW),
        prepare_delivery(headers(**{"x-shopify-shop-domain": "b.myshopify.com"}), body, None, NOW),
        prepare_delivery(headers(), body + b" ", None, NOW),
    ):
        assert changed.delivery["meta"]["body_hash"] != one


def test_a_mismatched_delivery_claims_no_event_id() -> None:
    prepared = prepare_delivery(headers(**{"x-shopify-topic": "products/delete"}), product_body(), None, NOW)
    assert prepared.parsed.mismatch and prepared.delivery["kind"] == "invalid"
    assert prepared.delivery["meta"]["dedupe_key"] is None and prepared.delivery["meta"]["body_hash"]


LONG = "e" * 3000


@pytest.mark.parametrize(
    ("what", "header", "body", "check"),
    [
        ("NUL in title, sku, barcode, image src: stripped", {},
         product_body(title="Mu\u0000g", variant_sku="S\u0000K", variant_barcode="\u0000",
                      image={"src": "https://x/\u0000a.jpg"}),
         lambda d: d["kind"] == "product" and {k: d["doc"]["variants"][0][k] for k in ("pn", "sku", "barcode", "pim",
         "errors")} == {"pn": "Mug", "sku": "SK", "barcode": None, "pim": "https://x/a.jpg", "errors": None}),
        ("lone surrogate in the title: the variant is invalid", {}, product_body(title="Mug \ud800"),
         lambda d: d["doc"]["variants"][0]["errors"] == "pn: title is not valid Unicode (a lone surrogate)"
         and d["doc"]["variants"][0]["pn"] == "Mug \ufffd"),
        ("lone surrogate in an image src", {}, product_body(image={"src": "https://x/\udc00.jpg"}),
         lambda d: "pim: image src is not valid Unicode" in d["doc"]["variants"][0]["errors"]),
        ("updated_at offset beyond 15:59: as UTC", {}, product_body(updated_at="2026-01-05T10:00:00+20:00"),
         lambda d: d["doc"]["updated_at"] == "2026-01-04T14:00:00+00:00"),
        ("updated_at offset within 15:59: kept", {}, product_body(updated_at="2026-01-05T10:00:00-05:00"),
         lambda d: d["doc"]["updated_at"] == "2026-01-05T10:00:00-05:00"),
        ("updated_at that UTC cannot hold", {}, product_body(updated_at="0001-01-01T00:00:00+20:00"),
         lambda d: d["kind"] == "invalid" and "out of range" in d["doc"]["reason"]),
        ("X-Shopify-Triggered-At beyond 15:59: as UTC", {"x-shopify-triggered-at": "2026-01-05T10:00:00+23:00"},
         product_body(), lambda d: d["meta"]["triggered_at"] == "2026-01-04T11:00:00+00:00"),
        ("X-Shopify-Triggered-At unusable: none", {"x-shopify-triggered-at": "0001-01-01T00:00:00+20:00"},
         product_body(), lambda d: d["meta"]["triggered_at"] is None),
        ("available of 10^30", {"x-shopify-topic": "inventory_levels/update"},
         json.dumps(LEVEL | {"available": 10**30}).encode(),
         lambda d: d["kind"] == "invalid" and d["doc"]["reason"].startswith("available is out of range")),
        ("an id beyond 64 bits", {}, product_body(id=2**64),
         lambda d: d["doc"]["reason"] == "product id is larger than a 64-bit id"),
        ("a 5000-digit number", {}, b'{"id": 1' + b"0" * 5000 + b', "variants": []}',
         lambda d: d["kind"] == "invalid" and d["doc"]["reason"].startswith("malformed JSON")),
        ("a non-ASCII digit id", {"x-shopify-topic": "products/delete"}, '{"id": "\u00b2"}'.encode(),
         lambda d: d["kind"] == "invalid" and "is not an id" in d["doc"]["reason"]),
        ("X-Shopify-Event-Id of 3 kB: hashed", {"x-shopify-event-id": LONG}, product_body(),
         lambda d: d["meta"]["dedupe_key"] == d["meta"]["event_id"] == bounded_key(LONG)
         and len(d["meta"]["event_id"]) == 71 and d["meta"]["headers"]["x-shopify-event-id"] == LONG),
        ("a shop domain of 3 kB: hashed", {"x-shopify-shop-domain": "s" * 3000}, product_body(),
         lambda d: d["meta"]["shop"].startswith("sha256:") and len(d["meta"]["shop"]) == 71),
        ("NUL in a header", {"x-shopify-api-version": "2025\u000007", "x-extra": "a\u0000b"}, product_body(),
         lambda d: d["meta"]["api_version"] == "202507" and d["meta"]["headers"]["x-extra"] == "ab"),
    ],
)  # fmt: skip
def test_values_postgresql_refuses_are_normalised_or_refused_before_the_sql(
    what: str, header: dict[str, str], body: bytes, check: Any
) -> None:
    delivery = prepare_delivery(headers(**header), body, None, NOW).delivery
    assert storable(delivery), what
    assert check(delivery), (what, delivery)


def test_keys_and_text_helpers() -> None:
    assert bounded_key(None) is None and bounded_key("  ") is None and bounded_key(" ev ") == "ev"
    assert bounded_key("x" * 255) == "x" * 255 and bounded_key("x" * 256) == bounded_key("x" * 256)
    assert str(bounded_key("x" * 256)).startswith("sha256:")
    assert scrub({"a\u0000": ["\ud800", 1, None, {"b": "c\u0000"}]}) == {"a": ["\ufffd", 1, None, {"b": "c"}]}
    assert header_time(None) is None and header_time("yesterday") is None
    assert header_time("2026-01-05T10:00:00-05:00") == datetime(2026, 1, 5, 15, 0, tzinfo=UTC)


def test_a_delivery_the_database_refused_is_recorded_without_headers() -> None:
    prepared = prepare_delivery(headers(), product_body(), None, NOW)
    refused = refused_delivery(prepared, "the database refused the delivery (22001): value too long\u0000")
    assert refused["kind"] == "invalid" and refused["meta"]["headers"] == {}
    assert refused["doc"] == {"reason": "the database refused the delivery (22001): value too long"}
    assert refused["meta"]["body_hash"] == prepared.delivery["meta"]["body_hash"] and refused["raw"]


@pytest.mark.parametrize(
    ("shop", "secret", "setting"),
    [
        ("a.myshopify.com", "secret-a", "SHOP_A_SECRET"),
        ("b.myshopify.com", "", "SHOP_B_SECRET"),  # its variable is unset: refused, never the default
        ("c.myshopify.com", "global", "SHOPIFY_WEBHOOK_SECRET"),
        ("", "global", "SHOPIFY_WEBHOOK_SECRET"),
    ],
)
def test_a_shop_with_its_own_secret_never_falls_back(shop: str, secret: str, setting: str) -> None:
    secrets = WebhookSecrets(
        "global", {"a.myshopify.com": ("SHOP_A_SECRET", "secret-a"), "b.myshopify.com": ("SHOP_B_SECRET", "")}
    )
    assert secrets.for_shop(shop) == (secret, setting)


NASTY = ("\u0000", "\ud800", "\udfff", "a\u0000\udbff b", "\U0001f600")
FIELDS = ("title", "id", "updated_at", "variant_title", "variant_sku", "variant_barcode", "variant_price",
          "variant_id", "variant_inventory_item_id", "variant_image_id")  # fmt: skip


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("topic", ["products/update", "products/delete", "inventory_levels/update"])
def test_no_text_anywhere_in_a_body_reaches_the_sql_unstorable(field: str, topic: str) -> None:
    for nasty in NASTY:
        body = product_body(**{field: nasty}, image={"src": nasty, "id": nasty}, images=[{"src": nasty}])
        if topic == "inventory_levels/update":
            body = json.dumps(
                {k.removeprefix("variant_"): nasty for k in FIELDS} | {"inventory_item_id": nasty}
            ).encode()
        prepared = prepare_delivery(headers(**{"x-shopify-topic": topic, "x-shopify-event-id": nasty}), body, None, NOW)
        assert storable(prepared.delivery), (field, nasty, prepared.delivery)


def test_the_toml_names_each_shops_secret_variable(tmp_path: Any) -> None:
    from storeflow.errors import ConfigError
    from storeflow.settings import describe, load_settings

    config = tmp_path / "storeflow.toml"
    config.write_text('[[esl.shops]]\nshop = " A.myshopify.com "\nwebhook_secret_env = "SHOP_A_SECRET"\n')
    settings = load_settings(config, env={})
    assert [(s.shop, s.webhook_secret_env) for s in settings.config.esl.shops] == [("a.myshopify.com", "SHOP_A_SECRET")]
    assert ("[esl] a.myshopify.com webhook secret", "SHOP_A_SECRET=(unset)", str(config)) in describe(settings)
    config.write_text(config.read_text() * 2)
    with pytest.raises(ConfigError, match=r"listed twice: a\.myshopify\.com"):
        load_settings(config, env={})
    config.write_text('[[esl.shops]]\nshop = "a.myshopify.com"\nwebhook_secret_env = "not a name"\n')
    with pytest.raises(ConfigError, match="webhook_secret_env"):
        load_settings(config, env={})


@pytest.mark.parametrize(
    ("entry", "verifies_alone", "admin"),
    [
        ('webhook_secret_env = "SHOP_A_SECRET"', True, False),
        ('admin_token_env = "SHOP_A_TOKEN"', False, True),
        ('webhook_secret_env = "SHOP_A_SECRET"\nadmin_token_env = "SHOP_A_TOKEN"', True, True),
    ],
)
def test_one_shop_entry_serves_webhook_secrets_and_admin_access(
    tmp_path: Any, entry: str, verifies_alone: bool, admin: bool
) -> None:
    """``[[esl.shops]]`` is one table: a shop listed only for reconciliation keeps the shared webhook secret."""
    from storeflow.esl.admin import admin_shops
    from storeflow.settings import load_settings

    config = tmp_path / "storeflow.toml"
    config.write_text(f'[[esl.shops]]\nshop = "a.myshopify.com"\n{entry}\n')
    settings = load_settings(config, env={"SHOPIFY_WEBHOOK_SECRET": "shared-secret"})
    secret, setting = WebhookSecrets.from_settings(settings).for_shop("a.myshopify.com")
    assert (setting == "SHOP_A_SECRET") is verifies_alone
    assert (secret == "shared-secret") is not verifies_alone
    assert [s.shop for s in admin_shops(settings)] == (["a.myshopify.com"] if admin else [])


def test_a_shop_entry_must_name_a_secret_or_a_token(tmp_path: Any) -> None:
    from storeflow.errors import ConfigError
    from storeflow.settings import load_settings

    config = tmp_path / "storeflow.toml"
    config.write_text('[[esl.shops]]\nshop = "a.myshopify.com"\n')
    with pytest.raises(ConfigError, match="webhook_secret_env, admin_token_env or both"):
        load_settings(config, env={})


def test_the_secrets_never_show_in_a_repr() -> None:
    secrets = WebhookSecrets("global-secret", {"a.myshopify.com": ("SHOP_A_SECRET", "shop-secret")})
    assert "global-secret" not in repr(secrets) and "shop-secret" not in repr(secrets)
