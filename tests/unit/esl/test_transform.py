"""Pure spec-002 logic: signatures, Shopify payload -> Hipoink product, replies, coalescing, schedules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from storeflow.esl.hipoink import judge_reply
from storeflow.esl.store import ClaimedItem
from storeflow.esl.transform import (
    FieldError,
    coalesce,
    hipoink_product,
    normalise_price,
    parse_id,
    parse_webhook,
    product_name,
    sign_body,
    transform_variant,
    validate_hipoink_product,
    variant_image,
    verify_hmac,
)
from storeflow.esl.worker import WorkerConfig
from storeflow.http.policy import next_slot

SECRET = "shpss_unit"
BIG = 2**53 + 1


def test_hmac_is_over_the_raw_bytes() -> None:
    body = b'{"src":"https:\\/\\/cdn.shopify.com\\/a.jpg"}'
    good = sign_body(SECRET, body)
    assert verify_hmac(SECRET, body, good)
    assert verify_hmac(SECRET, body, f"  {good} ")
    assert not verify_hmac(SECRET, body, None)
    assert not verify_hmac(SECRET, body, "")
    assert not verify_hmac("other-secret", body, good)
    assert not verify_hmac(SECRET, body + b" ", good)  # tampered
    reserialised = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert reserialised != body and not verify_hmac(SECRET, reserialised, good)
    assert not verify_hmac("", body, good)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (BIG, str(BIG)),
        (2**63 - 1, str(2**63 - 1)),
        (" 42 ", "42"),
        ("0042", "42"),
        (f"gid://shopify/ProductVariant/{BIG}", str(BIG)),
    ],
)
def test_parse_id_keeps_every_digit(value: Any, expected: str) -> None:
    assert parse_id(value, "id") == expected


@pytest.mark.parametrize("value", [None, True, 0, -5, 9.007199254740993e15, "abc", "", "12a", 1.0])
def test_parse_id_refuses_what_is_not_an_exact_id(value: Any) -> None:
    with pytest.raises(FieldError):
        parse_id(value, "id")


def test_json_floats_lose_digits_which_is_why_ids_are_parsed_exactly() -> None:
    body = f'{{"id": {BIG}}}'.encode()
    assert json.loads(body)["id"] == BIG
    assert float(BIG) != BIG  # what a float-based parser would store


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        ("19.99", "19.99"),
        ("19.9", "19.90"),
        ("20", "20.00"),
        ("20.00", "20.00"),
        (" 7.5 ", "7.50"),
        ("1.2345", "1.2345"),
        ("1.2300", "1.23"),
        ("1e3", "1000.00"),
        ("0", "0.00"),
        (12, "12.00"),
        (3.5, "3.50"),
    ],
)
def test_normalise_price(price: Any, expected: str) -> None:
    assert normalise_price(price) == expected


@pytest.mark.parametrize("price", [None, "", "  ", "abc", "-1.00", "NaN", "Infinity", "1e12", True])
def test_normalise_price_refuses(price: Any) -> None:
    with pytest.raises(FieldError, match="pp"):
        normalise_price(price)


@pytest.mark.parametrize(
    ("title", "variant", "expected"),
    [
        ("Mug", "Default Title", "Mug"),
        ("Mug", "default title", "Mug"),
        ("Mug", "Red / L", "Mug - Red / L"),
        ("Mug", None, "Mug"),
        ("  Mug ", "  ", "Mug"),
        ("", "Red", "Red"),
        (None, None, None),
    ],
)
def test_product_name(title: str | None, variant: str | None, expected: str | None) -> None:
    assert product_name(title, variant) == expected


def test_variant_image_prefers_the_variant_then_the_first_image() -> None:
    product = {
        "images": [
            {"id": 2, "position": 2, "src": "https://x/2.jpg", "variant_ids": [BIG + 5]},
            {"id": 1, "position": 1, "src": "https://x/1.jpg", "variant_ids": []},
        ]
    }
    assert variant_image(product, {"image_id": 2}, "7") == "https://x/2.jpg"
    assert variant_image(product, {"image_id": None}, str(BIG + 5)) == "https://x/2.jpg"
    assert variant_image(product, {}, "7") == "https://x/1.jpg"
    assert variant_image({**product, "image": {"src": "https://x/main.jpg"}}, {}, "7") == "https://x/main.jpg"
    assert variant_image({"images": []}, {}, "7") is None


def test_transform_variant_offers_every_pc_candidate() -> None:
    product = {"id": BIG, "title": "Tee", "images": []}
    row = transform_variant(product, {"id": BIG + 1, "title": "S", "price": "5", "barcode": "", "sku": None})
    assert row["candidates"] == {"barcode": None, "sku": None, "variant_id": str(BIG + 1)}
    assert (row["pn"], row["pp"], row["pi"], row["errors"]) == ("Tee - S", "5.00", None, None)
    bad = transform_variant(product | {"title": " "}, {"id": 3, "price": "x", "barcode": "123"})
    assert bad["errors"] == "pn: product title is empty; pp: price 'x' is not a decimal number"
    assert bad["candidates"]["barcode"] == "123"


@pytest.mark.parametrize(
    ("topic", "body", "kind", "reason"),
    [
        ("products/create", b"{", "invalid", "malformed JSON"),
        ("products/create", b"\xff", "invalid", "malformed JSON"),
        ("products/create", b"[]", "invalid", "not an object"),
        ("orders/create", b"{}", "invalid", "unsupported topic"),
        ("products/create", b'{"id": 1}', "invalid", "no variants"),
        ("products/create", b'{"id": 1, "updated_at": "yesterday", "variants": [{"id": 2}]}', "invalid", "ISO-8601"),
        ("products/create", b'{"id": 1, "variants": [{"id": 2}, {"id": 2}]}', "invalid", "twice"),
        ("products/delete", b'{"id": 1.5}', "invalid", "float"),
        ("inventory_levels/update", b'{"inventory_item_id": 5, "available": "7"}', "invalid", "not an integer"),
        ("products/delete", b'{"id": 99}', "delete", None),
    ],
)
def test_parse_webhook_never_raises(topic: str, body: bytes, kind: str, reason: str | None) -> None:
    parsed = parse_webhook(topic, body, fallback_updated_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert parsed.kind == kind
    if reason:
        assert parsed.reason is not None and reason in parsed.reason


def test_parse_webhook_product_and_inventory_documents() -> None:
    body = json.dumps(
        {
            "id": BIG,
            "title": "Tee",
            "updated_at": "2026-01-05T10:00:00-05:00",
            "variants": [{"id": BIG + 1, "price": "5", "inventory_item_id": BIG + 2}],
        }
    ).encode()
    parsed = parse_webhook("products/update", body)
    assert parsed.kind == "product"
    assert parsed.doc["product_id"] == str(BIG) and parsed.doc["updated_at"] == "2026-01-05T10:00:00-05:00"
    assert parsed.doc["variants"][0]["inventory_item_id"] == str(BIG + 2)
    level = parse_webhook(
        "inventory_levels/update",
        b'{"inventory_item_id": 5, "location_id": 6, "available": null, "updated_at": "2026-01-05T10:00:00Z"}',
    )
    assert level.doc == {
        "inventory_item_id": "5",
        "location_id": "6",
        "available": None,
        "updated_at": "2026-01-05T10:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("status", "body", "ok", "transient", "code"),
    [
        (200, b'{"error_code":0,"error_msg":"","count":2}', True, False, 0),
        (200, b'{"error_code":40001,"error_msg":"sign error"}', False, False, 40001),
        (200, b'{"error_code":"7"}', False, False, 7),
        (200, b"<html>", False, True, None),
        (200, b'{"count": 1}', False, True, None),
        (500, b"", False, True, None),
        (503, b"", False, True, None),
        (429, b"", False, True, None),
        (408, b"", False, True, None),
        (400, b'{"error":"bad"}', False, False, None),
        (404, b"", False, False, None),
    ],
)
def test_judge_reply(status: int, body: bytes, ok: bool, transient: bool, code: int | None) -> None:
    verdict = judge_reply(status, body)
    assert (verdict.ok, verdict.transient, verdict.error_code) == (ok, transient, code)


def test_coalesce_latest_wins_per_store_and_product() -> None:
    items = [
        ClaimedItem(id=i, store_code=store, product_id=product, operation="upsert", attempts=1)
        for i, store, product in [(1, "A", 10), (4, "A", 10), (2, "A", 11), (3, "B", 10), (5, "A", 10)]
    ]
    result = coalesce(items)
    assert [w.id for w in result.winners] == [2, 3, 5]
    assert result.superseded == {1: 5, 4: 5}


@pytest.mark.parametrize(("attempt", "wait"), [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (12, 300.0)])
def test_retry_backoff_schedule(attempt: int, wait: float) -> None:
    config = WorkerConfig(initial_delay=1.0, multiplier=2.0, max_delay=300.0)
    assert config.retry_delay(attempt) == wait


@pytest.mark.parametrize(
    ("now", "last", "rate", "expected"),
    [(10.0, None, 10, 10.0), (10.0, 9.95, 10, 10.05), (10.0, 9.0, 10, 10.0), (10.0, 9.99, 0, 10.0)],
)
def test_rate_limit_slot(now: float, last: float | None, rate: float, expected: float) -> None:
    assert next_slot(now, last, rate) == pytest.approx(expected)


def test_hipoink_product_and_its_validation() -> None:
    row = {"pc": "123", "pn": "Mug", "pp": "4.00", "pi": None, "pim": "https://x/1.jpg", "stock": 7}
    assert hipoink_product(row) == {"pc": "123", "pn": "Mug", "pp": "4.00", "pim": "https://x/1.jpg"}
    assert hipoink_product(row, "f1")["f1"] == "7"
    assert hipoink_product({**row, "stock": None}, "f1").get("f1") is None
    assert validate_hipoink_product(hipoink_product(row)) == []
    assert validate_hipoink_product({"pc": "", "pn": "x", "pp": "abc"}) == [
        "pc: product code is missing",
        "pp: price 'abc' is not a decimal number",
    ]
