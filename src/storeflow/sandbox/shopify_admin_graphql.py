"""The shopify-admin simulator's GraphQL execution over a shop's state (fields, connections, cost)."""

from __future__ import annotations

import base64
import bisect
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storeflow.sandbox.graphql_doc import (
    Field as GqlField,
)
from storeflow.sandbox.graphql_doc import (
    FragmentSpread,
    InlineFragment,
    Selection,
    resolve_value,
)
from storeflow.sandbox.shopify_admin_state import (
    TERMINAL,
    Shop,
    gid,
    gid_number,
    rest_time,
)

if TYPE_CHECKING:
    from storeflow.sandbox.shopify_admin import ShopifyAdminSimulator

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
        key = sort_key(sort)
        ordered = self.sim.sorted_products(self.shop, sort)
        if args.get("query"):
            products = self.search(ordered[0], args.get("query"))
            return _paginate("Product", products, key, args, (products, [key(n) for n in products]))
        return _paginate("Product", ordered[0], key, args, ordered)

    def r_QueryRoot_productVariants(self, _: Any, args: dict[str, Any]) -> Conn:
        self.require("read_products", "productVariants")
        variants = [v for p in self.shop.live() for v in self.sim.product_node(self.shop, p)["_variants"]]
        variants = self.search(variants, args.get("query"))
        return _paginate("ProductVariant", variants, sort_key(args.get("sortKey") or "ID"), args)

    def r_QueryRoot_product(self, _: Any, args: dict[str, Any]) -> Any:
        self.require("read_products", "product")
        number = gid_number(args.get("id"))
        if number is None:
            raise GqlError(f"Invalid global id '{args.get('id')}'", "argumentLiteralsIncompatible")
        product = self.shop.products.get(number)
        if product is None or number in self.shop.deleted:
            return None
        return self.sim.product_node(self.shop, product)

    def r_QueryRoot_node(self, _: Any, args: dict[str, Any]) -> Any:
        raw = str(args.get("id") or "")
        number = gid_number(raw)
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
        return _paginate("WebhookSubscription", subs, sort_key("ID"), args)

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
        return _paginate("ProductVariant", obj["_variants"], sort_key("POSITION"), args)

    # Mutation
    def r_Mutation_bulkOperationRunQuery(self, _: Any, args: dict[str, Any]) -> dict[str, Any]:
        return self.sim.start_bulk(self, str(args.get("query") or ""))

    def r_Mutation_bulkOperationCancel(self, _: Any, args: dict[str, Any]) -> dict[str, Any]:
        number = gid_number(args.get("id"))
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
        number = gid_number(args.get("id"))
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
                    when = rest_time(value)
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


def sort_key(name: str) -> Callable[[dict[str, Any]], Any]:
    if name == "UPDATED_AT":
        return lambda n: (n["_ts"], gid_number(n["id"]))
    if name == "TITLE":
        return lambda n: (n.get("title") or "", gid_number(n["id"]))
    if name == "POSITION":
        return lambda n: (n.get("position") or 0, gid_number(n["id"]))
    return lambda n: gid_number(n["id"])


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


def node_selections(ex: Execution, node_type: str, selections: list[Selection]) -> list[Selection]:
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


def image_node(image: dict[str, Any] | None) -> dict[str, Any] | None:
    if not image:
        return None
    return {"id": gid("ProductImage", image["id"]), "url": image.get("src"), "altText": image.get("alt")}
