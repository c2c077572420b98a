"""Simulator of Shopify's GraphQL Admin API for one or more shops (`shopify-admin` in `sandbox up`).

``POST /admin/api/{version}/graphql.json`` with ``X-Shopify-Access-Token``; the token names the shop
(``/_sandbox/shops`` hands them out). The document is parsed and walked over the shop's data, so a
client gets back exactly the fields it asked for, with Shopify's shapes:

- ``products`` / ``productVariants`` (cursor pagination, ``query: "updated_at:>'T'"``, ``sortKey``,
  ``reverse``), ``product(id:)``, ``node(id:)``, ``currentAppInstallation { accessScopes }``
- bulk queries: ``bulkOperationRunQuery`` -> CREATED -> RUNNING -> COMPLETED (or FAILED with an
  ``errorCode``), one at a time per shop (``OPERATION_IN_PROGRESS``), a JSONL file whose child lines
  carry ``__parentId`` and may come after other parents' lines
- ``webhookSubscriptions`` / ``webhookSubscriptionCreate`` / ``webhookSubscriptionDelete``
  (``userErrors`` with ``field`` and ``message``; "Address for this topic has already been taken")
- the calculated query cost and leaky bucket: ``extensions.cost`` on every answer
  (``requestedQueryCost``/``actualQueryCost`` integers, ``maximumAvailable``/``restoreRate`` floats,
  ``currentlyAvailable`` an integer), ``THROTTLED`` in ``errors[].extensions.code`` when the bucket
  cannot pay the requested cost, and ``MAX_COST_EXCEEDED`` above 1000 points.

Control (``/_sandbox/...``): ``POST shops`` (create/reset a shop: products, scopes, bucket),
``POST mutate`` (change prices, titles, statuses, delete or upsert products: no webhook is sent),
``POST subscriptions/remove`` (delete a subscription as Shopify does after 8 failed deliveries),
``POST bulk`` (make the next bulk operation fail, or start one as another process would),
``GET truth?shop=X`` (every live variant and its price).
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from storeflow.sandbox.base import ClientConfig, Simulator
from storeflow.sandbox.graphql_doc import (
    Field as GqlField,
)
from storeflow.sandbox.graphql_doc import (
    FragmentSpread,
    GraphQLSyntaxError,
    InlineFragment,
    Selection,
    parse,
    resolve_value,
)
from storeflow.sandbox.shopify import make_product

DEFAULT_SHOP = "sandbox-shop.myshopify.com"
SUPPORTED_VERSIONS = ("2025-07", "2025-10", "2026-01", "2026-04", "2026-07", "2026-10")
MAX_QUERY_COST = 1000
MUTATION_COST = 10
TOPICS = {
    "PRODUCTS_CREATE": "read_products",
    "PRODUCTS_UPDATE": "read_products",
    "PRODUCTS_DELETE": "read_products",
    "INVENTORY_LEVELS_UPDATE": "read_inventory",
    "APP_UNINSTALLED": None,
}
TERMINAL = ("COMPLETED", "FAILED", "CANCELED", "EXPIRED")
DOCS_RATE_LIMITS = "https://shopify.dev/api/usage/rate-limits"


def iso(ts: float) -> str:
    """Shopify's DateTime: ISO-8601 in UTC, seconds precision, ``Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rest_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def gid(kind: str, number: int | str) -> str:
    return f"gid://shopify/{kind}/{number}"


def _gid_number(value: Any) -> int | None:
    if not isinstance(value, str) or not value.startswith("gid://shopify/"):
        return None
    tail = value.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


# ---------------------------------------------------------------- shop state


@dataclass
class Bucket:
    """Shopify's leaky bucket: ``size`` points, refilled at ``restore_rate`` points per second."""

    size: float = 2000.0
    restore_rate: float = 100.0
    level: float = 2000.0
    stamp: float = field(default_factory=time.monotonic)

    def available(self, now: float) -> float:
        self.level = min(self.size, self.level + (now - self.stamp) * self.restore_rate)
        self.stamp = now
        return self.level

    def status(self, now: float) -> dict[str, Any]:
        return {
            "maximumAvailable": float(self.size),
            "currentlyAvailable": int(self.available(now)),
            "restoreRate": float(self.restore_rate),
        }


@dataclass
class BulkOp:
    id: int
    query: str
    created: float
    done_at: float
    lines: list[str]
    object_count: int
    root_count: int
    fail_code: str | None = None
    canceled: bool = False

    def status(self, now: float) -> str:
        if self.canceled:
            return "CANCELED"
        if now >= self.done_at:
            return "FAILED" if self.fail_code else "COMPLETED"
        return "CREATED" if now - self.created < 0.02 else "RUNNING"


@dataclass
class Shop:
    domain: str
    token: str
    seed: int
    scopes: list[str]
    bucket: Bucket
    products: dict[int, dict[str, Any]] = field(default_factory=dict)  # REST-shaped, by id
    updated: dict[int, float] = field(default_factory=dict)  # product id -> updated_at (epoch)
    deleted: set[int] = field(default_factory=set)
    subscriptions: dict[int, dict[str, Any]] = field(default_factory=dict)
    bulk_ops: dict[int, BulkOp] = field(default_factory=dict)
    bulk_fail_next: str | None = None
    bulk_objects_per_second: float = 200_000.0
    bulk_min_seconds: float = 0.5
    removed_subscriptions: list[dict[str, Any]] = field(default_factory=list)
    nodes: dict[int, dict[str, Any]] = field(default_factory=dict)  # GraphQL view, rebuilt on change
    sorted: dict[str, tuple[int, list[Any], list[Any]]] = field(default_factory=dict)
    version: int = 0  # bumped by every change of the catalogue
    throttled: int = 0
    queries: int = 0
    cost_used: int = 0
    last_stamp: float = 0.0

    def touch(self, pid: int, now: float) -> float:
        # Shopify's updatedAt has one-second resolution; changes of one product stay ordered
        stamp = max(float(int(now)), self.updated.get(pid, 0.0))
        self.updated[pid] = stamp
        self.nodes.pop(pid, None)
        return stamp

    def live(self) -> list[dict[str, Any]]:
        return [p for pid, p in self.products.items() if pid not in self.deleted]


class ShopSpec(BaseModel):
    shop: str = DEFAULT_SHOP
    products: int = Field(default=40, ge=0, le=200_000)
    seed: int | None = None
    scopes: list[str] = Field(default_factory=lambda: ["read_products", "read_inventory"])
    bucket_size: float = Field(default=2000.0, gt=0)
    restore_rate: float = Field(default=100.0, gt=0)
    bulk_objects_per_second: float = Field(default=200_000.0, gt=0)
    bulk_min_seconds: float = Field(default=0.5, ge=0, description="shortest run of a bulk operation")


class MutateSpec(BaseModel):
    shop: str = DEFAULT_SHOP
    prices: dict[str, str] = Field(default_factory=dict, description="variant id -> new price")
    titles: dict[str, str] = Field(default_factory=dict, description="product id -> new title")
    statuses: dict[str, str] = Field(default_factory=dict, description="product id -> active|archived|draft")
    delete: list[str] = Field(default_factory=list, description="product ids to delete")
    upsert: list[dict[str, Any]] = Field(default_factory=list, description="REST product payloads")
    change_prices: int = Field(default=0, ge=0, description="this many random products get new prices")
    delete_random: int = Field(default=0, ge=0, description="this many random products are deleted")


class RemoveSubscription(BaseModel):
    shop: str = DEFAULT_SHOP
    topic: str | None = None
    id: str | None = None


class BulkControl(BaseModel):
    shop: str = DEFAULT_SHOP
    fail_next: str | None = Field(default=None, description="ACCESS_DENIED | INTERNAL_SERVER_ERROR | TIMEOUT")
    start_other: bool = Field(default=False, description="start a bulk operation as another process would")
    seconds: float = Field(default=1.0, ge=0, description="how long that other operation runs")


def shop_token(seed: int, shop: str) -> str:
    return "shpat_" + hashlib.sha256(f"storeflow-admin-{seed}-{shop}".encode()).hexdigest()[:32]


# ---------------------------------------------------------------- GraphQL execution


class GqlError(Exception):
    def __init__(self, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra

    def as_dict(self) -> dict[str, Any]:
        error: dict[str, Any] = {"message": str(self)}
        if self.code:
            error["extensions"] = {"code": self.code, **self.extra}
        return error


@dataclass
class Conn:
    """A resolved connection: its nodes (of ``node_type``) and cursors."""

    node_type: str
    nodes: list[Any]
    cursors: list[str]
    has_next: bool
    has_previous: bool


def _cursor(key: Any) -> str:
    return base64.b64encode(json.dumps({"last_id": key}).encode()).decode()


def _uncursor(cursor: Any) -> Any:
    try:
        return json.loads(base64.b64decode(str(cursor)))["last_id"]
    except (ValueError, KeyError, TypeError) as exc:
        raise GqlError(f"Invalid cursor for current pagination sort: {cursor!r}", "BAD_REQUEST") from exc


# field -> (return type or None for a scalar, is a connection)
SCHEMA: dict[str, dict[str, tuple[str | None, bool]]] = {
    "QueryRoot": {
        "products": ("Product", True),
        "productVariants": ("ProductVariant", True),
        "product": ("Product", False),
        "node": ("Node", False),
        "currentBulkOperation": ("BulkOperation", False),
        "webhookSubscriptions": ("WebhookSubscription", True),
        "currentAppInstallation": ("AppInstallation", False),
        "shop": ("Shop", False),
    },
    "Mutation": {
        "bulkOperationRunQuery": ("BulkOperationRunQueryPayload", False),
        "bulkOperationCancel": ("BulkOperationCancelPayload", False),
        "webhookSubscriptionCreate": ("WebhookSubscriptionCreatePayload", False),
        "webhookSubscriptionDelete": ("WebhookSubscriptionDeletePayload", False),
    },
    "Product": {
        "id": (None, False),
        "legacyResourceId": (None, False),
        "title": (None, False),
        "handle": (None, False),
        "status": (None, False),
        "vendor": (None, False),
        "productType": (None, False),
        "tags": (None, False),
        "createdAt": (None, False),
        "updatedAt": (None, False),
        "featuredImage": ("Image", False),
        "variants": ("ProductVariant", True),
    },
    "ProductVariant": {
        "id": (None, False),
        "legacyResourceId": (None, False),
        "title": (None, False),
        "displayName": (None, False),
        "price": (None, False),
        "compareAtPrice": (None, False),
        "sku": (None, False),
        "barcode": (None, False),
        "position": (None, False),
        "inventoryQuantity": (None, False),
        "createdAt": (None, False),
        "updatedAt": (None, False),
        "image": ("Image", False),
        "inventoryItem": ("InventoryItem", False),
        "product": ("Product", False),
    },
    "Image": {"id": (None, False), "url": (None, False), "altText": (None, False)},
    "InventoryItem": {"id": (None, False), "legacyResourceId": (None, False)},
    "BulkOperation": {
        "id": (None, False),
        "status": (None, False),
        "errorCode": (None, False),
        "createdAt": (None, False),
        "completedAt": (None, False),
        "objectCount": (None, False),
        "rootObjectCount": (None, False),
        "fileSize": (None, False),
        "url": (None, False),
        "partialDataUrl": (None, False),
        "query": (None, False),
        "type": (None, False),
    },
    "BulkOperationRunQueryPayload": {
        "bulkOperation": ("BulkOperation", False),
        "userErrors": ("BulkOperationUserError", False),
    },
    "BulkOperationCancelPayload": {
        "bulkOperation": ("BulkOperation", False),
        "userErrors": ("UserError", False),
    },
    "BulkOperationUserError": {"field": (None, False), "message": (None, False), "code": (None, False)},
    "UserError": {"field": (None, False), "message": (None, False)},
    "WebhookSubscription": {
        "id": (None, False),
        "topic": (None, False),
        "format": (None, False),
        "uri": (None, False),
        "callbackUrl": (None, False),
        "includeFields": (None, False),
        "createdAt": (None, False),
        "updatedAt": (None, False),
        "endpoint": ("WebhookHttpEndpoint", False),
    },
    "WebhookHttpEndpoint": {"callbackUrl": (None, False)},
    "WebhookSubscriptionCreatePayload": {
        "webhookSubscription": ("WebhookSubscription", False),
        "userErrors": ("UserError", False),
    },
    "WebhookSubscriptionDeletePayload": {
        "deletedWebhookSubscriptionId": (None, False),
        "userErrors": ("UserError", False),
    },
    "AppInstallation": {"id": (None, False), "accessScopes": ("AccessScope", False)},
    "AccessScope": {"handle": (None, False), "description": (None, False)},
    "Shop": {"name": (None, False), "myshopifyDomain": (None, False)},
    "PageInfo": {
        "hasNextPage": (None, False),
        "hasPreviousPage": (None, False),
        "startCursor": (None, False),
        "endCursor": (None, False),
    },
}
NODE_TYPES = ("Product", "ProductVariant", "BulkOperation", "WebhookSubscription", "InventoryItem")
CONNECTION_FIELDS = {"edges", "nodes", "pageInfo"}


class Execution:
    """One GraphQL request against one shop."""

    def __init__(self, sim: ShopifyAdminSimulator, shop: Shop, version: str, fragments: dict[str, Any]) -> None:
        self.sim = sim
        self.shop = shop
        self.version = version
        self.fragments = fragments
        self.variables: dict[str, Any] = {}
        self.errors: list[dict[str, Any]] = []
        self.actual = 0
        self.now = time.time()

    # -- selections
    def flatten(self, type_name: str, selections: list[Selection]) -> list[GqlField]:
        out: list[GqlField] = []
        for sel in selections:
            if isinstance(sel, GqlField):
                out.append(sel)
            elif isinstance(sel, InlineFragment):
                if sel.type_condition in (None, type_name) or (
                    sel.type_condition == "Node" and type_name in NODE_TYPES
                ):
                    out += self.flatten(type_name, sel.selections)
            elif isinstance(sel, FragmentSpread):
                if sel.name not in self.fragments:
                    raise GqlError(f"Fragment {sel.name} was used, but not defined", "undefinedFragment")
                cond, inner = self.fragments[sel.name]
                if cond in (type_name, "Node"):
                    out += self.flatten(type_name, inner)
        return out

    def check(self, type_name: str, selections: list[Selection]) -> None:
        """Static validation: every selected field exists on its type."""
        for sel in selections:
            if isinstance(sel, InlineFragment):
                self.check(sel.type_condition or type_name, sel.selections)
                continue
            if isinstance(sel, FragmentSpread):
                if sel.name in self.fragments:
                    cond, inner = self.fragments[sel.name]
                    self.check(cond, inner)
                continue
            if sel.name == "__typename":
                continue
            if type_name == "Node":
                if sel.name == "id":
                    continue
                raise GqlError(f"Field '{sel.name}' doesn't exist on type 'Node'", "undefinedField")
            fields = SCHEMA.get(type_name, {})
            if sel.name not in fields:
                raise GqlError(f"Field '{sel.name}' doesn't exist on type '{type_name}'", "undefinedField")
            child, is_conn = fields[sel.name]
            if is_conn:
                if "first" not in sel.args and "last" not in sel.args:
                    raise GqlError("you must provide one of first or last", "BAD_REQUEST")
                for part in sel.selections:
                    if isinstance(part, GqlField) and part.name not in CONNECTION_FIELDS | {"__typename"}:
                        raise GqlError(
                            f"Field '{part.name}' doesn't exist on type '{child}Connection'", "undefinedField"
                        )
                    if isinstance(part, GqlField) and part.name == "edges":
                        for edge_part in part.selections:
                            if isinstance(edge_part, GqlField) and edge_part.name == "node":
                                self.check(child or "", edge_part.selections)
                    if isinstance(part, GqlField) and part.name == "nodes":
                        self.check(child or "", part.selections)
            elif child is not None:
                if not sel.selections:
                    raise GqlError(
                        f"Field must have selections (field '{sel.name}' returns {child}!)", "selectionMismatch"
                    )
                self.check(child, sel.selections)

    def cost(self, type_name: str, selections: list[Selection]) -> int:
        """Shopify's requested cost: objects 1, connections 2 + first x node cost, scalars 0."""
        total = 0
        for sel in self.flatten(type_name, selections) if type_name != "Node" else []:
            child, is_conn = SCHEMA.get(type_name, {}).get(sel.name, (None, False))
            if child is None:
                continue
            if is_conn:
                size = int(resolve_value(sel.args.get("first") or sel.args.get("last") or 0, self.variables) or 0)
                inner = 0
                for part in self.flatten(f"{child}Connection", sel.selections):
                    if part.name in ("edges",):
                        for ep in self.flatten(f"{child}Edge", part.selections):
                            if ep.name == "node":
                                inner = max(inner, 1 + self.cost(child, ep.selections))
                    elif part.name == "nodes":
                        inner = max(inner, 1 + self.cost(child, part.selections))
                total += 2 + size * inner
            else:
                total += 1 + self.cost(child, sel.selections)
        if type_name == "Node":
            total += 1 + max((self.cost(t, selections) for t in NODE_TYPES), default=0)
        return total

    # -- resolution
    def select(self, type_name: str, obj: Any, selections: list[Selection]) -> dict[str, Any]:
        self.actual += 1
        out: dict[str, Any] = {}
        for sel in self.flatten(type_name, selections):
            if sel.name == "__typename":
                out[sel.key] = type_name
                continue
            args = {k: resolve_value(v, self.variables) for k, v in sel.args.items()}
            value = self.resolve_field(type_name, obj, sel.name, args)
            out[sel.key] = self.complete(type_name, sel, value)
        return out

    def complete(self, parent: str, sel: GqlField, value: Any) -> Any:
        if isinstance(value, Conn):
            return self.connection(value, sel)
        child, _ = SCHEMA.get(parent, {}).get(sel.name, (None, False))
        if child is None or value is None:
            return value
        if child == "Node":
            child = value[0]
            value = value[1]
        if isinstance(value, list):
            return [self.select(child, v, sel.selections) for v in value]
        return self.select(child, value, sel.selections)

    def connection(self, conn: Conn, sel: GqlField) -> dict[str, Any]:
        self.actual += 2
        out: dict[str, Any] = {}
        for part in self.flatten(f"{conn.node_type}Connection", sel.selections):
            if part.name == "__typename":
                out[part.key] = f"{conn.node_type}Connection"
            elif part.name == "nodes":
                out[part.key] = [self.select(conn.node_type, n, part.selections) for n in conn.nodes]
            elif part.name == "edges":
                edges = []
                for node, cursor in zip(conn.nodes, conn.cursors, strict=True):
                    edge: dict[str, Any] = {}
                    for ep in self.flatten(f"{conn.node_type}Edge", part.selections):
                        if ep.name == "cursor":
                            edge[ep.key] = cursor
                        elif ep.name == "node":
                            edge[ep.key] = self.select(conn.node_type, node, ep.selections)
                        elif ep.name == "__typename":
                            edge[ep.key] = f"{conn.node_type}Edge"
                    edges.append(edge)
                out[part.key] = edges
            elif part.name == "pageInfo":
                info = {
                    "hasNextPage": conn.has_next,
                    "hasPreviousPage": conn.has_previous,
                    "startCursor": conn.cursors[0] if conn.cursors else None,
                    "endCursor": conn.cursors[-1] if conn.cursors else None,
                }
                out[part.key] = {p.key: info.get(p.name) for p in self.flatten("PageInfo", part.selections)}
        return out

    def require(self, scope: str, what: str) -> None:
        if scope not in self.shop.scopes:
            raise GqlError(
                f"Access denied for {what} field. Required access: `{scope}` access scope.",
                "ACCESS_DENIED",
                documentation="https://shopify.dev/api/usage/access-scopes",
                requiredAccess=f"`{scope}` access scope.",
            )

    def resolve_field(self, type_name: str, obj: Any, name: str, args: dict[str, Any]) -> Any:
        resolver: Callable[[Any, dict[str, Any]], Any] | None = getattr(self, f"r_{type_name}_{name}", None)
        if resolver is not None:
            return resolver(obj, args)
        if isinstance(obj, dict):
            return obj.get(name)
        return None

    # QueryRoot
    def r_QueryRoot_products(self, _: Any, args: dict[str, Any]) -> Conn:
        self.require("read_products", "products")
        sort = args.get("sortKey") or "ID"
        key = _sort_key(sort)
        ordered = self.sim.sorted_products(self.shop, sort)
        if args.get("query"):
            products = self.search(ordered[0], args.get("query"))
            return _paginate("Product", products, key, args, (products, [key(n) for n in products]))
        return _paginate("Product", ordered[0], key, args, ordered)

    def r_QueryRoot_productVariants(self, _: Any, args: dict[str, Any]) -> Conn:
        self.require("read_products", "productVariants")
        variants = [v for p in self.shop.live() for v in self.sim.product_node(self.shop, p)["_variants"]]
        variants = self.search(variants, args.get("query"))
        return _paginate("ProductVariant", variants, _sort_key(args.get("sortKey") or "ID"), args)

    def r_QueryRoot_product(self, _: Any, args: dict[str, Any]) -> Any:
        self.require("read_products", "product")
        number = _gid_number(args.get("id"))
        if number is None:
            raise GqlError(f"Invalid global id '{args.get('id')}'", "argumentLiteralsIncompatible")
        product = self.shop.products.get(number)
        if product is None or number in self.shop.deleted:
            return None
        return self.sim.product_node(self.shop, product)

    def r_QueryRoot_node(self, _: Any, args: dict[str, Any]) -> Any:
        raw = str(args.get("id") or "")
        number = _gid_number(raw)
        kind = raw.split("/")[3] if raw.count("/") >= 4 else ""
        if number is None:
            raise GqlError(f"Invalid global id '{raw}'", "argumentLiteralsIncompatible")
        if kind == "BulkOperation":
            op = self.shop.bulk_ops.get(number)
            return ("BulkOperation", self.sim.bulk_node(self.shop, op, self.now)) if op else None
        if kind == "Product":
            node = self.r_QueryRoot_product(None, args)
            return ("Product", node) if node else None
        if kind == "WebhookSubscription":
            sub = self.shop.subscriptions.get(number)
            return ("WebhookSubscription", self.sim.subscription_node(sub)) if sub else None
        return None

    def r_QueryRoot_currentBulkOperation(self, _: Any, args: dict[str, Any]) -> Any:
        if (args.get("type") or "QUERY") != "QUERY" or not self.shop.bulk_ops:
            return None
        op = self.shop.bulk_ops[max(self.shop.bulk_ops)]
        return self.sim.bulk_node(self.shop, op, self.now)

    def r_QueryRoot_webhookSubscriptions(self, _: Any, args: dict[str, Any]) -> Conn:
        subs = [self.sim.subscription_node(s) for s in self.shop.subscriptions.values()]
        topics = args.get("topics")
        if topics:
            subs = [s for s in subs if s["topic"] in topics]
        return _paginate("WebhookSubscription", subs, _sort_key("ID"), args)

    def r_QueryRoot_currentAppInstallation(self, _: Any, __: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": gid("AppInstallation", 1000 + self.shop.seed),
            "accessScopes": [{"handle": s, "description": None} for s in self.shop.scopes],
        }

    def r_QueryRoot_shop(self, _: Any, __: dict[str, Any]) -> dict[str, Any]:
        return {"name": self.shop.domain.split(".")[0], "myshopifyDomain": self.shop.domain}

    def r_ProductVariant_product(self, obj: dict[str, Any], _: dict[str, Any]) -> Any:
        return obj["_product"]

    def r_Product_variants(self, obj: dict[str, Any], args: dict[str, Any]) -> Conn:
        return _paginate("ProductVariant", obj["_variants"], _sort_key("POSITION"), args)

    # Mutation
    def r_Mutation_bulkOperationRunQuery(self, _: Any, args: dict[str, Any]) -> dict[str, Any]:
        return self.sim.start_bulk(self, str(args.get("query") or ""))

    def r_Mutation_bulkOperationCancel(self, _: Any, args: dict[str, Any]) -> dict[str, Any]:
        number = _gid_number(args.get("id"))
        op = self.shop.bulk_ops.get(number or -1)
        if op is None:
            return {
                "bulkOperation": None,
                "userErrors": [{"field": ["id"], "message": "Bulk operation does not exist"}],
            }
        op.canceled = op.status(self.now) not in TERMINAL or op.canceled
        return {"bulkOperation": self.sim.bulk_node(self.shop, op, self.now), "userErrors": []}

    def r_Mutation_webhookSubscriptionCreate(self, _: Any, args: dict[str, Any]) -> dict[str, Any]:
        return self.sim.create_subscription(self, args)

    def r_Mutation_webhookSubscriptionDelete(self, _: Any, args: dict[str, Any]) -> dict[str, Any]:
        number = _gid_number(args.get("id"))
        if number is None or number not in self.shop.subscriptions:
            return {
                "deletedWebhookSubscriptionId": None,
                "userErrors": [{"field": ["id"], "message": "Webhook subscription does not exist"}],
            }
        del self.shop.subscriptions[number]
        return {"deletedWebhookSubscriptionId": gid("WebhookSubscription", number), "userErrors": []}

    # search syntax: the terms storeflow's kind of client sends; others are ignored, as Shopify does
    def search(self, nodes: list[dict[str, Any]], query: Any) -> list[dict[str, Any]]:
        if not query:
            return nodes
        out = nodes
        for term in _search_terms(str(query)):
            name, op, value = term
            if name == "updated_at":
                try:
                    when = _rest_time(value)
                except ValueError as exc:
                    raise GqlError(f"Invalid search value for updated_at: {value!r}", "BAD_REQUEST") from exc
                out = [n for n in out if _compare(n["_ts"], op, when)]
            elif name == "status":
                out = [n for n in out if str(n.get("status", "")).lower() == value.lower()]
        return out


def _search_terms(query: str) -> list[tuple[str, str, str]]:
    terms = []
    for part in query.replace(" AND ", " ").split():
        if ":" not in part:
            continue
        name, _, rest = part.partition(":")
        op = "="
        for candidate in (">=", "<=", ">", "<"):
            if rest.startswith(candidate):
                op, rest = candidate, rest[len(candidate) :]
                break
        terms.append((name, op, rest.strip("'\"")))
    return terms


def _compare(left: float, op: str, right: float) -> bool:
    return {
        ">": left > right,
        ">=": left >= right,
        "<": left < right,
        "<=": left <= right,
        "=": left == right,
    }[op]


def _sort_key(name: str) -> Callable[[dict[str, Any]], Any]:
    if name == "UPDATED_AT":
        return lambda n: (n["_ts"], _gid_number(n["id"]))
    if name == "TITLE":
        return lambda n: (n.get("title") or "", _gid_number(n["id"]))
    if name == "POSITION":
        return lambda n: (n.get("position") or 0, _gid_number(n["id"]))
    return lambda n: _gid_number(n["id"])


def _paginate(
    node_type: str,
    nodes: list[Any],
    key: Callable[[Any], Any],
    args: dict[str, Any],
    ordered: tuple[list[Any], list[Any]] | None = None,
) -> Conn:
    """A page of ``nodes`` in ``key`` order (``ordered``: the nodes and keys already sorted)."""
    first, last = args.get("first"), args.get("last")
    size = first if first is not None else last
    if not isinstance(size, int) or size < 0 or size > 250:
        raise GqlError("The first and last arguments must be between 0 and 250", "BAD_REQUEST")
    reverse = bool(args.get("reverse"))
    if ordered is None:
        items = sorted(nodes, key=key)
        keys = [key(n) for n in items]
    else:
        items, keys = ordered
    if reverse:
        items, keys = items[::-1], keys[::-1]
    start = 0
    if args.get("after"):
        after = _uncursor(args["after"])
        after = tuple(after) if isinstance(after, list) else after
        # past the cursor's sort position (the node itself may have changed or gone since)
        if reverse:
            start = len(keys) - bisect.bisect_left(keys[::-1], after)
        else:
            start = bisect.bisect_right(keys, after)
    page = items[start : start + size]
    cursors = [_cursor(list(k) if isinstance(k, tuple) else k) for k in keys[start : start + size]]
    return Conn(node_type, page, cursors, start + size < len(items), start > 0)


# ---------------------------------------------------------------- the simulator


class ShopifyAdminSimulator(Simulator):
    name = "shopify-admin"
    description = "Shopify GraphQL Admin API: products, bulk operations, webhook subscriptions, query cost"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.shops: dict[str, Shop] = {}
        self.lock = threading.RLock()
        self.next_id = 1
        self.mutations = 0
        self.create_shop(ShopSpec(shop=DEFAULT_SHOP, seed=seed))

    # -- state
    def create_shop(self, spec: ShopSpec) -> Shop:
        seed = self.seed if spec.seed is None else spec.seed
        domain = spec.shop.strip().lower()
        shop = Shop(
            domain=domain,
            token=shop_token(seed, domain),
            seed=seed,
            scopes=list(spec.scopes),
            bucket=Bucket(spec.bucket_size, spec.restore_rate, spec.bucket_size),
            bulk_objects_per_second=spec.bulk_objects_per_second,
            bulk_min_seconds=spec.bulk_min_seconds,
        )
        for index in range(spec.products):
            product = make_product(seed, index)
            shop.products[product["id"]] = product
            shop.updated[product["id"]] = _rest_time(product["updated_at"])
        for product in shop.products.values():  # build the GraphQL view now, not in the first query
            self.product_node(shop, product)
        with self.lock:
            self.shops[domain] = shop
        return shop

    def shop_by_token(self, token: str | None) -> Shop | None:
        for shop in self.shops.values():
            if token and token == shop.token:
                return shop
        return None

    def product_node(self, shop: Shop, product: dict[str, Any]) -> dict[str, Any]:
        """A REST-shaped product as the GraphQL Product (with its variants under ``_variants``)."""
        pid = product["id"]
        cached = shop.nodes.get(pid)
        if cached is not None:
            return cached
        stamp = shop.updated.get(pid, _rest_time(product["updated_at"]))
        updated = iso(stamp)
        images = {img["id"]: img for img in product.get("images") or []}
        featured = product.get("image") or (product["images"][0] if product.get("images") else None)
        node: dict[str, Any] = {
            "id": gid("Product", pid),
            "legacyResourceId": str(pid),
            "title": product["title"],
            "handle": product.get("handle"),
            "status": str(product.get("status") or "active").upper(),
            "vendor": product.get("vendor"),
            "productType": product.get("product_type"),
            "tags": [t.strip() for t in str(product.get("tags") or "").split(",") if t.strip()],
            "createdAt": iso(_rest_time(product["created_at"])),
            "updatedAt": updated,
            "featuredImage": _image(featured),
            "_ts": stamp,
        }
        variants = []
        for v in product.get("variants") or []:
            image = images.get(v.get("image_id")) if v.get("image_id") else None
            if image is None:
                image = next((i for i in images.values() if v["id"] in (i.get("variant_ids") or [])), None)
            variants.append(
                {
                    "id": gid("ProductVariant", v["id"]),
                    "legacyResourceId": str(v["id"]),
                    "title": v.get("title"),
                    "displayName": f"{product['title']} - {v.get('title')}",
                    "price": v.get("price"),
                    "compareAtPrice": v.get("compare_at_price"),
                    # the GraphQL API answers "" where REST has null for an unset sku
                    "sku": v.get("sku") or "",
                    "barcode": v.get("barcode"),
                    "position": v.get("position"),
                    "inventoryQuantity": v.get("inventory_quantity"),
                    "createdAt": node["createdAt"],
                    "updatedAt": updated,
                    "image": _image(image),
                    "inventoryItem": {
                        "id": gid("InventoryItem", v["inventory_item_id"]),
                        "legacyResourceId": str(v["inventory_item_id"]),
                    },
                    "_product": node,
                    "_ts": stamp,
                }
            )
        node["_variants"] = variants
        shop.nodes[pid] = node
        return node

    def sorted_products(self, shop: Shop, sort: str) -> tuple[list[Any], list[Any]]:
        """The live products' nodes and keys in ``sort`` order (cached until the catalogue changes)."""
        cached = shop.sorted.get(sort)
        if cached is not None and cached[0] == shop.version:
            return cached[1], cached[2]
        key = _sort_key(sort)
        nodes = sorted((self.product_node(shop, p) for p in shop.live()), key=key)
        shop.sorted[sort] = (shop.version, nodes, [key(n) for n in nodes])
        return nodes, shop.sorted[sort][2]

    def truth(self, params: dict[str, str]) -> dict[str, Any]:
        shop = self.shops.get((params.get("shop") or DEFAULT_SHOP).lower())
        if shop is None:
            raise HTTPException(404, f"no shop {params.get('shop')}")
        variants = []
        for product in shop.live():
            for v in product.get("variants") or []:
                variants.append(
                    {
                        "product_id": str(product["id"]),
                        "variant_id": str(v["id"]),
                        "title": product["title"],
                        "variant_title": v.get("title"),
                        "price": v.get("price"),
                        "sku": v.get("sku"),
                        "barcode": v.get("barcode"),
                        "status": str(product.get("status") or "active"),
                        "updated_at": iso(shop.updated[product["id"]]),
                    }
                )
        return {"shop": shop.domain, "products": len(shop.live()), "variants": variants}

    def state(self) -> dict[str, Any]:
        return {
            "shops": {
                d: {
                    "products": len(s.live()),
                    "deleted": len(s.deleted),
                    "subscriptions": len(s.subscriptions),
                    "removed_subscriptions": s.removed_subscriptions,
                    "bulk_operations": len(s.bulk_ops),
                    "queries": s.queries,
                    "throttled": s.throttled,
                    "cost_used": s.cost_used,
                    "scopes": s.scopes,
                }
                for d, s in self.shops.items()
            }
        }

    def client_config(self, base_url: str) -> ClientConfig:
        shop = self.shops[DEFAULT_SHOP]
        return ClientConfig(
            toml={
                "esl": {
                    "shops": [
                        {
                            "shop": DEFAULT_SHOP,
                            "admin_api_base_url": base_url,
                            "admin_token_env": "SHOPIFY_TOKEN_SANDBOX_SHOP",
                        }
                    ]
                }
            },
            env={"SHOPIFY_TOKEN_SANDBOX_SHOP": shop.token},
        )

    # -- mutations of the catalogue (no webhook is sent)
    def mutate(self, spec: MutateSpec) -> dict[str, Any]:
        shop = self._shop(spec.shop)
        now = time.time()
        changed: set[int] = set()
        # one counter for the simulator: a shop reset and changed again gets other changes
        self.mutations += 1
        rng = random.Random(f"{shop.seed}-{self.mutations}")
        with self.lock:
            by_variant = {v["id"]: p for p in shop.live() for v in p.get("variants") or []}
            for vid, price in spec.prices.items():
                product = by_variant.get(int(vid))
                if product is None:
                    raise HTTPException(404, f"no variant {vid} in {shop.domain}")
                for v in product["variants"]:
                    if v["id"] == int(vid):
                        v["price"] = price
                changed.add(product["id"])
            for key, title in spec.titles.items():
                self._product(shop, key)["title"] = title
                changed.add(int(key))
            for key, status in spec.statuses.items():
                if status not in {"active", "archived", "draft"}:
                    raise HTTPException(422, f"status {status!r} is not active, archived or draft")
                self._product(shop, key)["status"] = status
                changed.add(int(key))
            live = sorted(p["id"] for p in shop.live())
            for pid in rng.sample(live, min(spec.change_prices, len(live))):
                for v in shop.products[pid]["variants"]:
                    v["price"] = f"{rng.randrange(1, 500)}.{rng.choice([0, 49, 95, 99]):02d}"
                changed.add(pid)
            deleted = [int(p) for p in spec.delete]
            remaining = sorted(set(live) - changed - set(deleted))
            deleted += rng.sample(remaining, min(spec.delete_random, len(remaining)))
            for pid in deleted:
                self._product(shop, pid)
                shop.deleted.add(pid)
            for payload in spec.upsert:
                pid = int(payload["id"])
                shop.products[pid] = json.loads(json.dumps(payload))
                shop.deleted.discard(pid)
                shop.updated[pid] = max(shop.updated.get(pid, 0.0), _rest_time(payload["updated_at"]))
                shop.nodes.pop(pid, None)
            for pid in changed:
                shop.touch(pid, now)
            for pid in deleted:
                shop.nodes.pop(pid, None)
            shop.version += 1
        return {
            "ok": True,
            "changed": [str(p) for p in sorted(changed)],
            "deleted": [str(p) for p in deleted],
            "upserted": len(spec.upsert),
        }

    def _shop(self, domain: str) -> Shop:
        shop = self.shops.get(domain.strip().lower())
        if shop is None:
            raise HTTPException(404, f"no shop {domain} (create it with POST /_sandbox/shops)")
        return shop

    def _product(self, shop: Shop, pid: Any) -> dict[str, Any]:
        product = shop.products.get(int(pid))
        if product is None or int(pid) in shop.deleted:
            raise HTTPException(404, f"no product {pid} in {shop.domain}")
        return product

    # -- bulk operations
    def start_bulk(self, ex: Execution, query: str) -> dict[str, Any]:
        shop = ex.shop
        running = [op for op in shop.bulk_ops.values() if op.status(ex.now) not in TERMINAL]
        if running:
            return {
                "bulkOperation": None,
                "userErrors": [
                    {
                        "field": ["query"],
                        "message": "A bulk query operation for this app and shop is already in progress: "
                        f"{gid('BulkOperation', running[0].id)}.",
                        "code": "OPERATION_IN_PROGRESS",
                    }
                ],
            }
        try:
            doc = parse(query)
            op_sel = doc.operation().selections
        except (GraphQLSyntaxError, ValueError) as exc:
            return {"bulkOperation": None, "userErrors": [{"field": ["query"], "message": str(exc), "code": "INVALID"}]}
        roots = [s for s in op_sel if isinstance(s, GqlField)]
        if len(roots) != 1 or SCHEMA["QueryRoot"].get(roots[0].name, (None, False))[1] is not True:
            return {
                "bulkOperation": None,
                "userErrors": [
                    {
                        "field": ["query"],
                        "message": "Bulk queries must contain at least one connection.",
                        "code": "INVALID",
                    }
                ],
            }
        lines, objects, root_count = self.bulk_lines(ex, roots[0], doc.fragments)
        with self.lock:
            op_id = self.next_id
            self.next_id += 1
        seconds = max(shop.bulk_min_seconds, objects / shop.bulk_objects_per_second)
        op = BulkOp(op_id, query, ex.now, ex.now + seconds, lines, objects, root_count, shop.bulk_fail_next)
        shop.bulk_fail_next = None
        shop.bulk_ops[op_id] = op
        return {"bulkOperation": self.bulk_node(shop, op, ex.now), "userErrors": []}

    def bulk_lines(self, ex: Execution, root: GqlField, fragments: dict[str, Any]) -> tuple[list[str], int, int]:
        """The JSONL lines: each object flat, nested connections as lines with ``__parentId``; a child
        line may come after lines of later parents (as Shopify's files do)."""
        sub = Execution(self, ex.shop, ex.version, fragments)
        node_type = SCHEMA["QueryRoot"][root.name][0] or ""
        args = {k: resolve_value(v, ex.variables) for k, v in root.args.items()}
        args["first"] = 250
        conn_resolver = getattr(sub, f"r_QueryRoot_{root.name}")
        nodes: list[Any] = []
        after = None
        while True:
            page = conn_resolver(None, {**args, "after": after} if after else args)
            nodes += page.nodes
            if not page.has_next:
                break
            after = page.cursors[-1]
        node_sel = _node_selections(sub, node_type, root.selections)
        rng = random.Random(self.seed * 31 + len(ex.shop.bulk_ops))
        lines: list[str] = []
        pending: list[str] = []
        objects = 0
        for node in nodes:
            flat, children = self.flatten_bulk(sub, node_type, node, node_sel)
            lines.append(json.dumps(flat, separators=(",", ":")))
            objects += 1 + len(children)
            for child in children:
                (pending if rng.random() < 0.35 else lines).append(json.dumps(child, separators=(",", ":")))
            if pending and rng.random() < 0.5:
                lines += pending
                pending = []
        lines += pending
        return lines, objects, len(nodes)

    def flatten_bulk(
        self, ex: Execution, type_name: str, node: Any, selections: list[Selection]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        flat: dict[str, Any] = {}
        children: list[dict[str, Any]] = []
        for sel in ex.flatten(type_name, selections):
            child, is_conn = SCHEMA.get(type_name, {}).get(sel.name, (None, False))
            if is_conn:
                resolver = getattr(ex, f"r_{type_name}_{sel.name}")
                items = resolver(node, {"first": 250}).nodes if child else []
                inner = _node_selections(ex, child or "", sel.selections)
                for item in items:
                    item_flat, grand = self.flatten_bulk(ex, child or "", item, inner)
                    item_flat["__parentId"] = node["id"]
                    children.append(item_flat)
                    children += grand
                continue
            value = ex.resolve_field(type_name, node, sel.name, {})
            flat[sel.key] = ex.complete(type_name, sel, value)
        return flat, children

    def bulk_node(self, shop: Shop, op: BulkOp, now: float) -> dict[str, Any]:
        status = op.status(now)
        progress = 1.0 if status in TERMINAL else min(1.0, (now - op.created) / max(1e-6, op.done_at - op.created))
        body = ("\n".join(op.lines) + "\n") if op.lines else ""
        completed = status == "COMPLETED"
        return {
            "id": gid("BulkOperation", op.id),
            "status": status,
            "errorCode": op.fail_code if status == "FAILED" else None,
            "createdAt": iso(op.created),
            "completedAt": iso(op.done_at) if status in TERMINAL else None,
            "objectCount": str(int(op.object_count * progress)),
            "rootObjectCount": str(int(op.root_count * progress)),
            "fileSize": str(len(body.encode())) if completed and op.lines else None,
            "url": f"{self.base_url}/bulk-results/{shop.seed}/{op.id}.jsonl?X-Goog-Expires=604800"
            if completed and op.lines
            else None,
            "partialDataUrl": None,
            "query": op.query,
            "type": "QUERY",
        }

    # -- webhook subscriptions
    def subscription_node(self, sub: dict[str, Any]) -> dict[str, Any]:
        return {
            **sub,
            "callbackUrl": sub["uri"],
            "endpoint": {"__typename": "WebhookHttpEndpoint", "callbackUrl": sub["uri"]},
        }

    def create_subscription(self, ex: Execution, args: dict[str, Any]) -> dict[str, Any]:
        topic = args.get("topic")
        if topic not in TOPICS:
            raise GqlError(
                f"Variable $topic of type WebhookSubscriptionTopic! was provided invalid value {topic!r}",
                "INVALID_VARIABLE",
            )
        scope = TOPICS[topic]
        if scope:
            ex.require(scope, "webhookSubscriptionCreate")
        sub_in = args.get("webhookSubscription") or {}
        uri = sub_in.get("uri")
        if "uri" in sub_in and ex.version < "2025-04":
            raise GqlError(
                "InputObject 'WebhookSubscriptionInput' doesn't accept argument 'uri'", "argumentNotAccepted"
            )
        uri = uri or sub_in.get("callbackUrl")
        field_name = "uri" if "uri" in sub_in else "callbackUrl"
        if not uri or not str(uri).startswith(("https://", "http://")):
            return {
                "webhookSubscription": None,
                "userErrors": [{"field": ["webhookSubscription", field_name], "message": "Address is invalid"}],
            }
        if any(s["topic"] == topic and s["uri"] == uri for s in ex.shop.subscriptions.values()):
            return {
                "webhookSubscription": None,
                "userErrors": [
                    {
                        "field": ["webhookSubscription", field_name],
                        "message": "Address for this topic has already been taken",
                    }
                ],
            }
        with self.lock:
            sub_id = self.next_id
            self.next_id += 1
        sub = {
            "id": gid("WebhookSubscription", sub_id),
            "topic": topic,
            "format": sub_in.get("format") or "JSON",
            "uri": uri,
            "includeFields": sub_in.get("includeFields") or [],
            "createdAt": iso(ex.now),
            "updatedAt": iso(ex.now),
        }
        ex.shop.subscriptions[sub_id] = sub
        return {"webhookSubscription": self.subscription_node(sub), "userErrors": []}

    # -- HTTP
    def install(self, app: FastAPI) -> None:
        @app.post("/admin/api/{version}/graphql.json")
        async def graphql(version: str, request: Request) -> Response:
            shop = self.shop_by_token(request.headers.get("x-shopify-access-token"))
            if shop is None:
                return JSONResponse(
                    {"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}, 401
                )
            if version not in SUPPORTED_VERSIONS and version != "unstable":
                return JSONResponse({"errors": "Not Found"}, 404)
            try:
                body = json.loads(await request.body())
                if not isinstance(body, dict) or not isinstance(body.get("query"), str):
                    raise ValueError("no query")
            except ValueError:
                return JSONResponse({"errors": {"query": "Required parameter missing or invalid"}}, 400)
            with self.lock:
                answer = self.execute(shop, version, body)
            return Response(json.dumps(answer, separators=(",", ":")), 200, media_type="application/json")

        @app.get("/bulk-results/{seed}/{op_id}.jsonl")
        async def bulk_file(seed: int, op_id: int) -> Response:
            for shop in self.shops.values():
                op = shop.bulk_ops.get(op_id)
                if op is not None and shop.seed == seed and op.status(time.time()) == "COMPLETED":
                    return Response("\n".join(op.lines) + "\n", media_type="application/jsonl")
            return Response("<Error><Code>NoSuchKey</Code></Error>", 404, media_type="application/xml")

        @app.post("/_sandbox/shops")
        async def shops(spec: ShopSpec) -> dict[str, Any]:
            shop = self.create_shop(spec)
            return {"shop": shop.domain, "token": shop.token, "products": len(shop.products)}

        @app.post("/_sandbox/mutate")
        async def mutate(spec: MutateSpec) -> dict[str, Any]:
            return self.mutate(spec)

        @app.post("/_sandbox/subscriptions/remove")
        async def remove_subscription(spec: RemoveSubscription) -> dict[str, Any]:
            shop = self._shop(spec.shop)
            with self.lock:
                gone = [
                    (k, s)
                    for k, s in shop.subscriptions.items()
                    if (spec.topic and s["topic"] == spec.topic) or (spec.id and s["id"] == spec.id)
                ]
                for key, sub in gone:
                    del shop.subscriptions[key]
                    shop.removed_subscriptions.append({**sub, "reason": "8 consecutive failed deliveries"})
            return {"ok": True, "removed": [s["id"] for _, s in gone]}

        @app.post("/_sandbox/bulk")
        async def bulk_control(spec: BulkControl) -> dict[str, Any]:
            shop = self._shop(spec.shop)
            with self.lock:
                if spec.fail_next:
                    shop.bulk_fail_next = spec.fail_next
                if spec.start_other:
                    op_id = self.next_id
                    self.next_id += 1
                    now = time.time()
                    query = "{ products { edges { node { id } } } }"
                    shop.bulk_ops[op_id] = BulkOp(op_id, query, now, now + spec.seconds, [], 0, 0)
            return {"ok": True}

    def execute(self, shop: Shop, version: str, body: dict[str, Any]) -> dict[str, Any]:
        """One GraphQL request: parse, validate, price, pay from the bucket, resolve."""
        now = time.monotonic()
        shop.queries += 1
        try:
            doc = parse(body["query"])
            op = doc.operation(body.get("operationName"))
        except GraphQLSyntaxError as exc:
            return {
                "errors": [{"message": str(exc), "locations": [{"line": exc.line, "column": exc.column}]}],
            }
        except ValueError as exc:
            return {"errors": [{"message": str(exc)}]}
        ex = Execution(self, shop, version, doc.fragments)
        variables = body.get("variables") or {}
        ex.variables = {**{k: v for k, v in op.variables.items() if v is not None}, **variables}
        root = "Mutation" if op.kind == "mutation" else "QueryRoot"
        try:
            ex.check(root, op.selections)
            requested = MUTATION_COST if op.kind == "mutation" else ex.cost(root, op.selections)
        except GqlError as exc:
            return {"errors": [exc.as_dict()]}
        if requested > MAX_QUERY_COST:
            return {
                "errors": [
                    {
                        "message": f"Query cost is {requested}, which exceeds the single query max cost limit "
                        f"({MAX_QUERY_COST}).\n\nSee {DOCS_RATE_LIMITS} for more information on how the cost of "
                        "a query is calculated.\n\nTo query larger amounts of data with fewer limits, bulk "
                        "operations should be used instead.",
                        "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_QUERY_COST},
                    }
                ]
            }
        available = shop.bucket.available(now)
        if available < requested:
            shop.throttled += 1
            return {
                "errors": [
                    {"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": DOCS_RATE_LIMITS}}
                ],
                "extensions": {
                    "cost": {
                        "requestedQueryCost": requested,
                        "actualQueryCost": None,
                        "throttleStatus": shop.bucket.status(now),
                    }
                },
            }
        shop.bucket.level -= requested
        data: dict[str, Any] | None = {}
        errors: list[dict[str, Any]] = []
        assert data is not None
        for sel in ex.flatten(root, op.selections):
            try:
                args = {k: resolve_value(v, ex.variables) for k, v in sel.args.items()}
                value = ex.resolve_field(root, None, sel.name, args)
                data[sel.key] = ex.complete(root, sel, value)
            except GqlError as exc:
                data[sel.key] = None
                err = exc.as_dict()
                err["locations"] = [{"line": sel.line, "column": sel.column}]
                err["path"] = [sel.key]
                errors.append(err)
        actual = MUTATION_COST if op.kind == "mutation" else min(requested, ex.actual)
        shop.bucket.level = min(shop.bucket.size, shop.bucket.level + (requested - actual))
        shop.cost_used += actual
        answer: dict[str, Any] = {}
        if errors:
            answer["errors"] = errors
        answer["data"] = data
        answer["extensions"] = {
            "cost": {
                "requestedQueryCost": requested,
                "actualQueryCost": actual,
                "throttleStatus": shop.bucket.status(time.monotonic()),
            }
        }
        return answer


def _node_selections(ex: Execution, node_type: str, selections: list[Selection]) -> list[Selection]:
    """The node selections of a connection field (``edges { node {...} }`` or ``nodes {...}``)."""
    out: list[Selection] = []
    for part in ex.flatten(f"{node_type}Connection", selections):
        if part.name == "edges":
            for ep in ex.flatten(f"{node_type}Edge", part.selections):
                if ep.name == "node":
                    out += ep.selections
        elif part.name == "nodes":
            out += part.selections
    return out


def _image(image: dict[str, Any] | None) -> dict[str, Any] | None:
    if not image:
        return None
    return {"id": gid("ProductImage", image["id"]), "url": image.get("src"), "altText": image.get("alt")}
