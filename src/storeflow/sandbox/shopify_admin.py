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

import json
import random
import threading
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from storeflow.sandbox.base import ClientConfig, Simulator
from storeflow.sandbox.graphql_doc import (
    Field as GqlField,
)
from storeflow.sandbox.graphql_doc import (
    GraphQLSyntaxError,
    Selection,
    parse,
    resolve_value,
)
from storeflow.sandbox.shopify import make_product
from storeflow.sandbox.shopify_admin_graphql import (
    SCHEMA,
    Execution,
    GqlError,
    image_node,
    node_selections,
    sort_key,
)
from storeflow.sandbox.shopify_admin_state import (
    DEFAULT_SHOP,
    DOCS_RATE_LIMITS,
    MAX_QUERY_COST,
    MUTATION_COST,
    SUPPORTED_VERSIONS,
    TERMINAL,
    TOPICS,
    Bucket,
    BulkControl,
    BulkOp,
    MutateSpec,
    RemoveSubscription,
    Shop,
    ShopSpec,
    gid,
    iso,
    rest_time,
    shop_token,
)

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
            shop.updated[product["id"]] = rest_time(product["updated_at"])
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
        stamp = shop.updated.get(pid, rest_time(product["updated_at"]))
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
            "createdAt": iso(rest_time(product["created_at"])),
            "updatedAt": updated,
            "featuredImage": image_node(featured),
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
                    "image": image_node(image),
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
        key = sort_key(sort)
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
                shop.updated[pid] = max(shop.updated.get(pid, 0.0), rest_time(payload["updated_at"]))
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
        node_sel = node_selections(sub, node_type, root.selections)
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
                inner = node_selections(ex, child or "", sel.selections)
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
