"""Pure reconciliation policy: the per-variant diff, query-cost pacing, bulk JSONL grouping, subscriptions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from storeflow.esl.admin import (
    AdminClient,
    AdminConfig,
    AdminError,
    Throttle,
    bulk_poll_interval,
    error_codes,
    pace_wait,
    page_size,
    throttle_from,
)
from storeflow.esl.reconcile import (
    StoredVariant,
    diff_products,
    group_bulk_lines,
    incremental_since,
    remote_product,
    search_query,
)
from storeflow.esl.subscriptions import expected_subscriptions, plan_subscriptions, topic_name

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PID = "9007199254740993"
VID = "9008199254740993"


def node(
    updated: datetime = T0, price: str = "10.00", status: str = "ACTIVE", variants: int = 1, **variant: Any
) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/Product/{PID}",
        "title": "Mug",
        "status": status,
        "updatedAt": updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "featuredImage": {"url": "https://cdn.example/p.jpg"},
        "variants": {
            "nodes": [
                {
                    "id": f"gid://shopify/ProductVariant/{int(VID) + i}",
                    "title": "Default Title",
                    "price": price,
                    "sku": "",
                    "barcode": None,
                    "image": None,
                    "inventoryItem": {"id": f"gid://shopify/InventoryItem/{int(VID) + 10**12 + i}"},
                    **variant,
                }
                for i in range(variants)
            ]
        },
    }


def stored(
    variant: str = VID, pp: str = "10.00", updated: datetime | None = T0, status: str = "valid", **fields: Any
) -> StoredVariant:
    values: dict[str, Any] = {
        "product_id": PID,
        "variant_id": variant,
        "inventory_item_id": str(int(variant) + 10**12),
        "barcode": None,
        "sku": None,
        "pn": "Mug",
        "pp": pp,
        "pim": "https://cdn.example/p.jpg",
        "status": status,
        "source_updated_at": updated,
        **fields,
    }
    return StoredVariant(**values)


def test_remote_product_matches_the_webhook_fields() -> None:
    product = remote_product(node(barcode="  ", sku=None))
    [row] = product.variants
    assert product.product_id == PID and product.updated_at == T0
    assert row["variant_id"] == VID and row["barcode"] is None and row["sku"] is None
    assert row["pn"] == "Mug" and row["pp"] == "10.00" and row["pim"] == "https://cdn.example/p.jpg"
    assert row["inventory_item_id"] == str(int(VID) + 10**12)
    variant_image = remote_product(node(image={"url": "https://cdn.example/v.jpg"})).variants[0]
    assert variant_image["pim"] == "https://cdn.example/v.jpg"


@pytest.mark.parametrize(
    ("ours", "theirs", "full", "expected"),
    [
        # (stored rows, remote node, full listing?, (create, update, delete, unchanged, skipped_newer, actions))
        ([stored()], node(), False, (0, 0, 0, 1, 0, [])),
        ([], node(), False, (1, 0, 0, 0, 0, ["upsert"])),
        ([stored(pp="9.00")], node(), False, (0, 1, 0, 0, 0, ["upsert"])),
        ([stored(status="deleted")], node(), False, (1, 0, 0, 0, 0, ["upsert"])),
        ([stored(pim=None)], node(), False, (0, 1, 0, 0, 0, ["upsert"])),
        ([stored(sku="OLD")], node(), False, (0, 1, 0, 0, 0, ["upsert"])),
        ([stored(pp="9.00", updated=T0 + timedelta(seconds=1))], node(), False, (0, 0, 0, 0, 1, [])),
        ([stored(), stored(variant=str(int(VID) + 5))], node(), False, (0, 0, 1, 1, 0, ["upsert"])),
        ([stored()], node(status="ARCHIVED"), False, (0, 0, 1, 0, 0, ["deactivate"])),
        ([stored()], node(status="DRAFT"), False, (0, 0, 1, 0, 0, ["deactivate"])),
        ([stored()], None, True, (0, 0, 1, 0, 0, ["delete"])),
        ([stored()], None, False, (0, 0, 0, 0, 0, [])),
        ([stored(updated=T0 + timedelta(hours=2))], None, True, (0, 0, 0, 0, 1, [])),
        ([stored(status="deleted")], None, True, (0, 0, 0, 0, 0, [])),
    ],
)
def test_diff_table(
    ours: list[StoredVariant], theirs: dict[str, Any] | None, full: bool, expected: tuple[Any, ...]
) -> None:
    remote = [remote_product(theirs)] if theirs else []
    diff = diff_products(ours, remote, full=full, snapshot_at=T0 + timedelta(hours=1))
    got = (
        diff.count("create"),
        diff.count("update"),
        diff.count("delete"),
        diff.unchanged,
        diff.skipped_newer,
        [a.kind for a in diff.actions],
    )
    assert got == expected


def test_inactive_products_kept_when_the_mapping_says_so() -> None:
    diff = diff_products([stored()], [remote_product(node(status="ARCHIVED"))], full=False, inactive="keep")
    assert diff.actions == [] and diff.unchanged == 1


def test_change_describes_old_and_new() -> None:
    [action] = diff_products([stored(pp="9.00")], [remote_product(node())], full=False).actions
    assert action.changes[0].describe() == f"update  product {PID} variant {VID}: pp '9.00' -> '10.00'"


def test_bulk_children_out_of_order_are_grouped_under_their_parents() -> None:
    lines = [
        {"id": "gid://shopify/Product/1", "updatedAt": "2026-03-01T12:00:00Z"},
        {"id": "gid://shopify/Product/2", "updatedAt": "2026-03-01T12:00:00Z"},
        {"id": "gid://shopify/ProductVariant/11", "__parentId": "gid://shopify/Product/1"},
        {"id": "gid://shopify/ProductVariant/21", "__parentId": "gid://shopify/Product/2"},
        {"id": "gid://shopify/ProductVariant/12", "__parentId": "gid://shopify/Product/1"},
        {"id": "gid://shopify/ProductVariant/31", "__parentId": "gid://shopify/Product/3"},
        {"id": "gid://shopify/Product/3", "updatedAt": "2026-03-01T12:00:00Z"},
    ]
    grouped = {
        p["id"].rsplit("/", 1)[1]: [v["id"].rsplit("/", 1)[1] for v in p["variants"]] for p in group_bulk_lines(lines)
    }
    assert grouped == {"1": ["11", "12"], "2": ["21"], "3": ["31"]}


@pytest.mark.parametrize(
    ("available", "rate", "elapsed", "cost", "wait"),
    [
        (2000, 100, 0, 962, 0.0),  # plenty
        (500, 100, 0, 962, 4.62),  # (962 - 500) / 100
        (500, 100, 2, 962, 2.62),  # 2 s already restored 200 points
        (500, 100, 10, 962, 0.0),  # refilled while we were busy
        (0, 1000, 0, 962, 0.962),  # Shopify Plus restores 1000/s
        (0, 50, 0, 5000, 20.0),  # never wait for more than the bucket holds (1000 max)
    ],
)
def test_pace_wait_table(available: float, rate: float, elapsed: float, cost: float, wait: float) -> None:
    throttle = Throttle(maximum=1000 if cost > 2000 else 2000, available=available, restore_rate=rate, at=100.0)
    assert pace_wait(throttle, cost, now=100.0 + elapsed) == pytest.approx(wait)


def test_pace_wait_without_a_throttle_status() -> None:
    assert pace_wait(None, 500, now=0) == 0.0


@pytest.mark.parametrize(
    ("extensions", "expected"),
    [
        (
            {
                "cost": {
                    "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 1954, "restoreRate": 100.0}
                }
            },
            (2000.0, 1954.0, 100.0),
        ),
        ({"cost": {"requestedQueryCost": 10}}, None),
        ({}, None),
        (None, None),
    ],
)
def test_throttle_from_table(extensions: Any, expected: tuple[float, float, float] | None) -> None:
    throttle = throttle_from(extensions, 5.0)
    assert (None if throttle is None else (throttle.maximum, throttle.available, throttle.restore_rate)) == expected


@pytest.mark.parametrize(("attempt", "wait"), [(0, 0.2), (1, 0.3), (2, 0.45), (10, 5.0), (40, 5.0)])
def test_bulk_poll_interval_table(attempt: int, wait: float) -> None:
    assert bulk_poll_interval(attempt) == pytest.approx(wait)


def test_error_codes() -> None:
    errors = [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}, {"message": "x"}, "junk"]
    assert error_codes(errors) == ("THROTTLED",)
    assert error_codes("[API] Invalid API key") == ()


@pytest.mark.parametrize(
    ("high_water", "newest", "expected"),
    [
        (T0, T0 - timedelta(days=1), T0 - timedelta(minutes=5)),
        (None, T0, T0 - timedelta(minutes=5)),
        (None, None, None),
    ],
)
def test_incremental_since_table(high_water: datetime | None, newest: datetime | None, expected: Any) -> None:
    assert incremental_since(high_water, newest, 300) == expected


def test_search_query_is_utc_seconds() -> None:
    since = datetime(2026, 3, 1, 14, 0, 0, 500000, tzinfo=UTC).astimezone(UTC)
    assert search_query(since) == "updated_at:>'2026-03-01T14:00:00Z'"
    assert search_query(None) is None


def test_subscription_plan() -> None:
    expected = expected_subscriptions("https://app.example/")
    assert expected["PRODUCTS_UPDATE"] == "https://app.example/webhooks/shopify/products/update"
    actual = [
        {"id": "1", "topic": "PRODUCTS_CREATE", "uri": expected["PRODUCTS_CREATE"]},
        {"id": "2", "topic": "PRODUCTS_UPDATE", "uri": "https://old.example/hook"},
        {"id": "3", "topic": "ORDERS_CREATE", "uri": "https://else.example/orders"},
    ]
    plan = plan_subscriptions(expected, actual)
    assert [s["id"] for s in plan.present] == ["1"]
    assert plan.missing == ("PRODUCTS_UPDATE", "PRODUCTS_DELETE", "INVENTORY_LEVELS_UPDATE")
    assert [s["id"] for s in plan.stale] == ["2"]
    assert topic_name("INVENTORY_LEVELS_UPDATE") == "inventory_levels/update"


def _config() -> AdminConfig:
    return AdminConfig("s.myshopify.com", "https://s.myshopify.com", "2026-10", "shpat_secret", "https://app")


def test_client_waits_out_throttled_answers_and_never_surfaces_them() -> None:
    answers = [
        {
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {
                "cost": {
                    "requestedQueryCost": 500,
                    "actualQueryCost": None,
                    "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 100, "restoreRate": 100.0},
                }
            },
        },
        {
            "data": {"shop": {"name": "s"}},
            "extensions": {
                "cost": {
                    "requestedQueryCost": 500,
                    "actualQueryCost": 3,
                    "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": 597, "restoreRate": 100.0},
                }
            },
        },
    ]
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=answers[len(seen) - 1])

    waits: list[float] = []
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        client = AdminClient(http, _config(), sleep=waits.append, clock=lambda: sum(waits))
        assert client.query("{ shop { name } }") == {"shop": {"name": "s"}}
    assert waits == [pytest.approx(4.0)]  # (500 - 100) / 100
    assert client.stats.throttled_retries == 1 and client.stats.cost_used == 3
    assert seen[0].headers["X-Shopify-Access-Token"] == "shpat_secret"
    assert json.loads(seen[0].content)["query"] == "{ shop { name } }"
    assert str(seen[0].url) == "https://s.myshopify.com/admin/api/2026-10/graphql.json"


def test_client_errors_name_the_shop_not_the_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"errors": "[API] Invalid API key or access token"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as http, pytest.raises(AdminError) as caught:
        AdminClient(http, _config()).query("{ shop { name } }")
    assert "s.myshopify.com" in str(caught.value) and "shpat_secret" not in str(caught.value)
    assert "shpat_secret" not in repr(_config())


@pytest.mark.parametrize(
    ("available", "elapsed", "expected"),
    [
        (None, 0, 52),  # nothing known yet: the largest page
        (2000, 0, 52),
        (500, 0, 26),  # (500 - 2) // 19
        (60, 0, 5),  # below the smallest page: wait for 5 rather than crawl
        (100, 3, 20),  # 3 s restored 300 points: (400 - 2) // 19
    ],
)
def test_page_size_table(available: float | None, elapsed: float, expected: int) -> None:
    throttle = None if available is None else Throttle(2000, available, 100, at=0)
    assert page_size(throttle, elapsed, per_item=19, largest=52) == expected
