"""The Shopify Admin API simulator answers with Shopify's shapes (GraphQL over loopback HTTP)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from storeflow.sandbox.host import SandboxHost
from storeflow.sandbox.shopify_admin import DEFAULT_SHOP, ShopifyAdminSimulator

PRODUCTS = """query($after: String) { products(first: 5, after: $after, sortKey: UPDATED_AT) {
  edges { cursor node { id updatedAt variants(first: 10) { nodes { id price sku barcode } } } }
  pageInfo { hasNextPage endCursor } } }"""


@pytest.fixture
def admin(sandbox: Callable[..., SandboxHost]) -> Callable[..., dict[str, Any]]:
    host = sandbox("shopify-admin", seed=3)
    sim = host.sim("shopify-admin")
    assert isinstance(sim, ShopifyAdminSimulator)
    url = host.urls["shopify-admin"]

    def gql(query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> dict[str, Any]:
        response = httpx.post(
            f"{url}/admin/api/2026-10/graphql.json",
            json={"query": query, "variables": variables or {}},
            headers={"X-Shopify-Access-Token": token or sim.shops[DEFAULT_SHOP].token},
        )
        body: dict[str, Any] = response.json()
        body["_status"] = response.status_code
        body["_url"] = url
        return body

    return gql


def test_pagination_cost_and_big_ids(admin: Callable[..., dict[str, Any]]) -> None:
    seen: list[str] = []
    after = None
    while True:
        body = admin(PRODUCTS, {"after": after})
        cost = body["extensions"]["cost"]
        assert isinstance(cost["requestedQueryCost"], int) and isinstance(cost["actualQueryCost"], int)
        status = cost["throttleStatus"]
        assert isinstance(status["maximumAvailable"], float) and isinstance(status["restoreRate"], float)
        assert isinstance(status["currentlyAvailable"], int)
        page = body["data"]["products"]
        seen += [e["node"]["id"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)) == 40
    assert all(int(s.rsplit("/", 1)[1]) > 2**53 for s in seen)


def test_unknown_token_field_and_cost_limit(admin: Callable[..., dict[str, Any]]) -> None:
    assert admin("{ shop { name } }", token="shpat_wrong")["_status"] == 401
    wrong = admin("{ products(first: 1) { edges { node { nope } } } }")
    assert wrong["errors"][0]["extensions"]["code"] == "undefinedField"
    big = admin("{ products(first: 250) { edges { node { variants(first: 100) { nodes { id } } } } } }")
    assert big["errors"][0]["extensions"]["code"] == "MAX_COST_EXCEEDED"


def test_bulk_operation_one_at_a_time_and_jsonl(admin: Callable[..., dict[str, Any]]) -> None:
    run = (
        "mutation { bulkOperationRunQuery("
        'query: "{ products { edges { node { id variants { edges { node { id } } } } } } }")'
        " { bulkOperation { id status } userErrors { field message code } } }"
    )
    url = admin("{ shop { name } }")["_url"]
    httpx.post(f"{url}/_sandbox/bulk", json={"start_other": True, "seconds": 600}).raise_for_status()
    busy = admin(run)["data"]["bulkOperationRunQuery"]
    assert busy["bulkOperation"] is None and busy["userErrors"][0]["code"] == "OPERATION_IN_PROGRESS"
    other = admin("{ currentBulkOperation { id status } }")["data"]["currentBulkOperation"]
    assert other["status"] in ("CREATED", "RUNNING")
    cancel = "mutation($id: ID!) { bulkOperationCancel(id: $id) { bulkOperation { status } userErrors { message } } }"
    assert admin(cancel, {"id": other["id"]})["data"]["bulkOperationCancel"]["bulkOperation"]["status"] == "CANCELED"
    first = admin(run)["data"]["bulkOperationRunQuery"]
    assert first["userErrors"] == [] and first["bulkOperation"]["status"] in ("CREATED", "RUNNING")
    op_id = first["bulkOperation"]["id"]
    node = {"status": "CREATED"}
    while node["status"] not in ("COMPLETED", "FAILED"):
        time.sleep(0.05)
        node = admin(
            "query($id: ID!) { node(id: $id) { ... on BulkOperation { status url objectCount } } }", {"id": op_id}
        )["data"]["node"]
    assert node["status"] == "COMPLETED" and int(node["objectCount"]) > 40
    lines = httpx.get(node["url"]).text.splitlines()
    rows = [json.loads(line) for line in lines]
    parents = [r["id"] for r in rows if "__parentId" not in r]
    children = [r for r in rows if "__parentId" in r]
    assert len(parents) == 40 and children
    position = {pid: i for i, pid in enumerate(r["id"] for r in rows)}
    late = [
        c
        for c in children
        if any(position[p] > position[c["__parentId"]] and position[p] < position[c["id"]] for p in parents)
    ]
    assert late, "some child lines come after other parents' lines"


def test_subscriptions_taken_and_removed(admin: Callable[..., dict[str, Any]]) -> None:
    create = (
        "mutation { webhookSubscriptionCreate(topic: PRODUCTS_UPDATE, webhookSubscription:"
        ' {uri: "https://app.example/webhooks/shopify/products/update", format: JSON})'
        " { webhookSubscription { id topic uri } userErrors { field message } } }"
    )
    made = admin(create)["data"]["webhookSubscriptionCreate"]
    assert made["userErrors"] == [] and made["webhookSubscription"]["topic"] == "PRODUCTS_UPDATE"
    again = admin(create)["data"]["webhookSubscriptionCreate"]
    assert again["userErrors"] == [
        {"field": ["webhookSubscription", "uri"], "message": "Address for this topic has already been taken"}
    ]
    url = admin("{ shop { name } }")["_url"]
    httpx.post(f"{url}/_sandbox/subscriptions/remove", json={"topic": "PRODUCTS_UPDATE"}).raise_for_status()
    listed = admin("{ webhookSubscriptions(first: 10) { edges { node { id } } } }")
    assert listed["data"]["webhookSubscriptions"]["edges"] == []


def test_throttled_when_the_bucket_is_empty(sandbox: Callable[..., SandboxHost]) -> None:
    host = sandbox("shopify-admin")
    url = host.urls["shopify-admin"]
    token = httpx.post(
        f"{url}/_sandbox/shops", json={"shop": "tiny.myshopify.com", "bucket_size": 60, "restore_rate": 1}
    ).json()["token"]
    codes = []
    for _ in range(3):
        body = httpx.post(
            f"{url}/admin/api/2026-10/graphql.json", json={"query": PRODUCTS}, headers={"X-Shopify-Access-Token": token}
        ).json()
        codes.append(body.get("errors", [{}])[0].get("extensions", {}).get("code"))
    assert "THROTTLED" in codes
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert body["extensions"]["cost"]["actualQueryCost"] is None
