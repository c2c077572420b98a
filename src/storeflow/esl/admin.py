"""Shopify GraphQL Admin API client: cost-aware queries, bulk operations, webhook subscriptions.

The caller hands in the `httpx.Client`; only the base URL differs between a real shop
(``https://{shop}``) and the sandbox simulator. Every answer's ``extensions.cost.throttleStatus``
feeds the pacing policy (`pace_wait`, pure) so the leaky bucket never empties; a ``THROTTLED``
answer waits for the bucket to hold the requested cost and is sent again. The access token goes
in ``X-Shopify-Access-Token`` and nowhere else (never in a log line, an error or a bulk download).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx

from storeflow.errors import ConfigError, StoreflowError
from storeflow.http.policy import parse_retry_after
from storeflow.logs import get_logger, register_secrets

if TYPE_CHECKING:
    from storeflow.settings import EslShop, Settings

log = get_logger("esl")
MAX_QUERY_COST = 1000  # Shopify's single-query limit
TERMINAL_BULK = ("COMPLETED", "FAILED", "CANCELED", "EXPIRED")
REQUIRED_SCOPES = ("read_products", "read_inventory")
# (topic enum, path under the callback base URL)
TOPICS = (
    ("PRODUCTS_CREATE", "/webhooks/shopify/products/create"),
    ("PRODUCTS_UPDATE", "/webhooks/shopify/products/update"),
    ("PRODUCTS_DELETE", "/webhooks/shopify/products/delete"),
    ("INVENTORY_LEVELS_UPDATE", "/webhooks/shopify/inventory_levels/update"),
)


class AdminError(StoreflowError):
    """The Admin API refused a request (the message names the shop and Shopify's error codes)."""

    def __init__(self, message: str, codes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.codes = codes


@dataclass(frozen=True)
class AdminConfig:
    """What the client needs for one shop; built from `[[esl.shops]]` and the token's env var."""

    shop: str
    base_url: str
    api_version: str
    token: str = field(repr=False)
    callback_base_url: str
    inactive_products: str = "remove"
    overlap_seconds: float = 300.0

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/admin/api/{self.api_version}/graphql.json"

    @classmethod
    def from_settings(cls, settings: Settings, shop: str) -> AdminConfig:
        entry = find_shop(settings, shop)
        token = settings.env_value(entry.admin_token_env or "") or ""
        if not token:
            raise ConfigError(
                f"shop {entry.shop}: {entry.admin_token_env} (its Admin API access token) is not set "
                "in the environment or .env"
            )
        register_secrets([token])
        return cls(
            shop=entry.shop.strip().lower(),
            base_url=entry.admin_api_base_url or f"https://{entry.shop}",
            api_version=entry.api_version or settings.config.esl.shopify_api_version,
            token=token,
            callback_base_url=(entry.callback_base_url or settings.APP_BASE_URL).rstrip("/"),
            inactive_products=entry.inactive_products,
            overlap_seconds=settings.config.esl.reconcile_overlap_seconds,
        )


def find_shop(settings: Settings, shop: str) -> EslShop:
    wanted = shop.strip().lower()
    for entry in admin_shops(settings):
        if entry.shop == wanted:
            return entry
    known = ", ".join(s.shop for s in admin_shops(settings)) or "none"
    raise ConfigError(f"shop {shop!r} has no [[esl.shops]] entry with admin_token_env in the TOML (known: {known})")


def shop_names(settings: Settings, shop: str) -> list[str]:
    """``--shop X|all`` -> the shop domains it names."""
    if shop == "all":
        names = [s.shop for s in admin_shops(settings)]
        if not names:
            raise ConfigError("no [[esl.shops]] entry with admin_token_env in the TOML: nothing to do for --shop all")
        return names
    return [find_shop(settings, shop).shop]


def admin_shops(settings: Settings) -> list[EslShop]:
    """The ``[[esl.shops]]`` entries that give Admin API access (a webhook secret alone does not)."""
    return [s for s in settings.config.esl.shops if s.admin_token_env]


# ---------------------------------------------------------------- pacing (pure)


@dataclass(frozen=True)
class Throttle:
    """The bucket as Shopify last reported it, and when (monotonic seconds)."""

    maximum: float
    available: float
    restore_rate: float
    at: float

    def available_at(self, now: float) -> float:
        return min(self.maximum, self.available + max(0.0, now - self.at) * self.restore_rate)


def pace_wait(throttle: Throttle | None, cost: float, now: float, margin: float = 0.0) -> float:
    """Seconds to wait so the bucket holds ``cost`` (+ ``margin``) points when the request arrives."""
    if throttle is None or throttle.restore_rate <= 0:
        return 0.0
    needed = min(throttle.maximum, cost + margin)
    missing = needed - throttle.available_at(now)
    return max(0.0, missing / throttle.restore_rate)


def throttle_from(extensions: Any, now: float) -> Throttle | None:
    """``extensions.cost.throttleStatus`` -> Throttle (None when absent or malformed)."""
    try:
        status = extensions["cost"]["throttleStatus"]
        return Throttle(
            float(status["maximumAvailable"]),
            float(status["currentlyAvailable"]),
            float(status["restoreRate"]),
            now,
        )
    except (KeyError, TypeError, ValueError):
        return None


def error_codes(errors: Any) -> tuple[str, ...]:
    if not isinstance(errors, list):
        return ()
    codes = []
    for error in errors:
        if isinstance(error, dict) and isinstance(error.get("extensions"), dict):
            code = error["extensions"].get("code")
            if isinstance(code, str):
                codes.append(code)
    return tuple(codes)


def page_size(throttle: Throttle | None, now: float, per_item: int, largest: int, smallest: int = 5) -> int:
    """Items per page: as many as the bucket holds points for now (Shopify charges the requested
    cost up front and refunds the unused part), between ``smallest`` and ``largest``; below
    ``smallest`` the request waits for the bucket instead of crawling in tiny pages."""
    if throttle is None:
        return largest
    fits = int((throttle.available_at(now) - 2) // max(1, per_item))
    return max(min(smallest, largest), min(largest, fits))


def bulk_poll_interval(attempt: int, base: float = 0.2, cap: float = 5.0) -> float:
    """Wait before poll ``attempt`` (0-based) of a running bulk operation."""
    return min(cap, base * (1.5**attempt))


# ---------------------------------------------------------------- the client


@dataclass
class AdminStats:
    requests: int = 0
    cost_used: int = 0
    throttled_retries: int = 0
    waited_seconds: float = 0.0


class AdminClient:
    """One shop's GraphQL Admin API, paced by its query cost."""

    def __init__(
        self,
        http: httpx.Client,
        config: AdminConfig,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        max_attempts: int = 30,
    ) -> None:
        self.http = http
        self.config = config
        self.sleep = sleep
        self.clock = clock
        self.max_attempts = max_attempts
        self.throttle: Throttle | None = None
        self.stats = AdminStats()
        self._costs: dict[str, int] = {}  # document -> last requested cost

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.stats.waited_seconds += seconds
            self.sleep(seconds)

    def query(self, document: str, variables: dict[str, Any] | None = None, cost: int | None = None) -> dict[str, Any]:
        """Run ``document``; returns ``data``. THROTTLED, 429 and 5xx wait and retry; other errors raise.

        ``cost``: the requested cost when the caller knows it (else the document's last one).
        """
        shop = self.config.shop
        for attempt in range(self.max_attempts):
            expected = cost if cost is not None else self._costs.get(document, 50)
            self._wait(pace_wait(self.throttle, expected, self.clock()))
            try:
                response = self.http.post(
                    self.config.graphql_url,
                    json={"query": document, "variables": variables or {}},
                    headers={"X-Shopify-Access-Token": self.config.token, "Content-Type": "application/json"},
                )
            except httpx.HTTPError as exc:
                if attempt + 1 >= self.max_attempts:
                    raise AdminError(f"shop {shop}: Admin API unreachable: {type(exc).__name__}") from exc
                self._wait(min(10.0, 0.5 * 2**attempt))
                continue
            self.stats.requests += 1
            if response.status_code in (401, 403):
                raise AdminError(
                    f"shop {shop}: the Admin API refused the access token (HTTP {response.status_code}); "
                    "check the [[esl.shops]] admin_token_env variable",
                    ("UNAUTHORIZED",),
                )
            if response.status_code == 429 or response.status_code >= 500:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                self._wait(retry_after if retry_after is not None else min(10.0, 0.5 * 2**attempt))
                continue
            try:
                body = response.json()
            except ValueError as exc:
                raise AdminError(f"shop {shop}: HTTP {response.status_code} with a body that is not JSON") from exc
            if response.status_code >= 400 or not isinstance(body, dict):
                raise AdminError(f"shop {shop}: HTTP {response.status_code}: {str(body)[:300]}")
            now = self.clock()
            extensions = body.get("extensions") or {}
            self.throttle = throttle_from(extensions, now) or self.throttle
            spent = extensions.get("cost") if isinstance(extensions, dict) else None
            if isinstance(spent, dict):
                if isinstance(spent.get("requestedQueryCost"), int):
                    self._costs[document] = spent["requestedQueryCost"]
                    cost = spent["requestedQueryCost"]  # a THROTTLED retry waits for this much
                if isinstance(spent.get("actualQueryCost"), int):
                    self.stats.cost_used += spent["actualQueryCost"]
            codes = error_codes(body.get("errors"))
            if "THROTTLED" in codes:
                # the wait happens at the top of the loop: pace_wait for the cost Shopify just asked
                self.stats.throttled_retries += 1
                if self.throttle is None:
                    self._wait(1.0)
                continue
            if body.get("errors"):
                messages = "; ".join(str(e.get("message")) for e in body["errors"] if isinstance(e, dict)) or str(
                    body["errors"]
                )
                raise AdminError(f"shop {shop}: {messages[:500]}", codes)
            data = body.get("data")
            if not isinstance(data, dict):
                raise AdminError(f"shop {shop}: answer without data")
            return data
        raise AdminError(f"shop {shop}: still throttled or failing after {self.max_attempts} attempts", ("THROTTLED",))

    # -- scopes
    def access_scopes(self) -> list[str]:
        data = self.query("query { currentAppInstallation { accessScopes { handle } } }")
        return [s["handle"] for s in data["currentAppInstallation"]["accessScopes"]]

    # -- products
    def product_pages(self, query: str | None, variants_per_product: int = 5) -> Iterator[list[dict[str, Any]]]:
        """Pages of products (sorted by updatedAt) with all their variants; ``query`` is Shopify search
        syntax such as ``updated_at:>'2026-01-05T09:00:00Z'``. Each page is as large as the bucket
        can pay for now (see `page_size`); a product with more variants gets the rest by `product(id:)`."""
        per_product = 1 + 1 + 2 + variants_per_product * 3  # node, featuredImage, connection, variants
        largest = max(1, min(250, (MAX_QUERY_COST - 2) // per_product))
        document = PRODUCTS_PAGE.replace("VARIANTS_FIRST", str(variants_per_product))
        after: str | None = None
        while True:
            first = page_size(self.throttle, self.clock(), per_product, largest)
            data = self.query(document, {"first": first, "after": after, "query": query}, cost=2 + first * per_product)
            page = data["products"]
            nodes = [edge["node"] for edge in page["edges"]]
            for node in nodes:
                variants = node["variants"]
                while variants["pageInfo"]["hasNextPage"]:
                    more = self.query(VARIANTS_PAGE, {"id": node["id"], "after": variants["pageInfo"]["endCursor"]})
                    extra = more["product"]["variants"] if more.get("product") else None
                    if extra is None:
                        break
                    variants = {"nodes": variants["nodes"] + extra["nodes"], "pageInfo": extra["pageInfo"]}
                node["variants"] = {"nodes": variants["nodes"]}
            yield nodes
            if not page["pageInfo"]["hasNextPage"]:
                return
            after = page["pageInfo"]["endCursor"]

    # -- bulk operations
    def run_bulk_query(self, bulk_query: str, timeout: float = 3600.0) -> dict[str, Any]:
        """Start a bulk query (waiting for, or reusing, one already running) and poll it to its end.

        Returns the final BulkOperation (``status``, ``errorCode``, ``url``, ``createdAt``, ...).
        """
        started = self.clock()
        polls = 0
        while True:
            data = self.query(BULK_RUN, {"query": bulk_query})["bulkOperationRunQuery"]
            errors = data.get("userErrors") or []
            if not errors and data.get("bulkOperation"):
                op = data["bulkOperation"]
                break
            if any(e.get("code") == "OPERATION_IN_PROGRESS" for e in errors):
                current = self.query(BULK_CURRENT)["currentBulkOperation"]
                if current and current.get("query") == bulk_query and current["status"] not in TERMINAL_BULK:
                    log.info("shop %s: reusing running bulk operation %s", self.config.shop, current["id"])
                    op = current
                    break
                if self.clock() - started > timeout:
                    raise AdminError(f"shop {self.config.shop}: another bulk operation kept running", ("TIMEOUT",))
                self._wait(bulk_poll_interval(polls))
                polls += 1
                continue
            raise AdminError(
                f"shop {self.config.shop}: bulkOperationRunQuery refused: "
                + "; ".join(f"{e.get('field')}: {e.get('message')}" for e in errors),
                tuple(str(e.get("code")) for e in errors if e.get("code")),
            )
        polls = 0
        while op["status"] not in TERMINAL_BULK:
            if self.clock() - started > timeout:
                raise AdminError(f"shop {self.config.shop}: bulk operation {op['id']} still {op['status']}")
            self._wait(bulk_poll_interval(polls))
            polls += 1
            node = self.query(BULK_NODE, {"id": op["id"]})["node"]
            if node is None:
                raise AdminError(f"shop {self.config.shop}: bulk operation {op['id']} vanished")
            op = node
        return op

    def bulk_lines(self, url: str) -> Iterator[dict[str, Any]]:
        """The JSONL result of a bulk operation, one object per line (no access token is sent)."""
        with self.http.stream("GET", url) as response:
            if response.status_code != 200:
                raise AdminError(f"shop {self.config.shop}: bulk result download failed: HTTP {response.status_code}")
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    # -- webhook subscriptions
    def subscriptions(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = None
        while True:
            page = self.query(SUBSCRIPTIONS, {"after": after})["webhookSubscriptions"]
            for edge in page["edges"]:
                node = edge["node"]
                uri = node.get("uri") or (node.get("endpoint") or {}).get("callbackUrl")
                out.append({"id": node["id"], "topic": node["topic"], "uri": uri, "format": node.get("format")})
            if not page["pageInfo"]["hasNextPage"]:
                return out
            after = page["pageInfo"]["endCursor"]

    def create_subscription(self, topic: str, uri: str) -> tuple[str | None, list[dict[str, Any]]]:
        """(id or None, userErrors); ``uri`` on current API versions, ``callbackUrl`` before 2025-04."""
        key = "uri" if self.config.api_version >= "2025-04" else "callbackUrl"
        result = self.query(SUBSCRIPTION_CREATE, {"topic": topic, "sub": {key: uri, "format": "JSON"}})
        payload = result["webhookSubscriptionCreate"]
        made = payload.get("webhookSubscription")
        return (made["id"] if made else None), list(payload.get("userErrors") or [])

    def delete_subscription(self, sub_id: str) -> list[dict[str, Any]]:
        payload = self.query(SUBSCRIPTION_DELETE, {"id": sub_id})["webhookSubscriptionDelete"]
        return list(payload.get("userErrors") or [])


def parse_shopify_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


_PRODUCT_FIELDS = "id title status updatedAt featuredImage { url }"
_VARIANT_FIELDS = "id title price sku barcode image { url } inventoryItem { id }"
PRODUCTS_PAGE = (
    "query ReconcileProducts($first: Int!, $after: String, $query: String) {"
    " products(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {"
    f" edges {{ node {{ {_PRODUCT_FIELDS}"
    f" variants(first: VARIANTS_FIRST) {{ nodes {{ {_VARIANT_FIELDS} }} pageInfo {{ hasNextPage endCursor }} }} }} }}"
    " pageInfo { hasNextPage endCursor } } }"
)
VARIANTS_PAGE = (
    "query ReconcileVariants($id: ID!, $after: String) { product(id: $id) {"
    f" variants(first: 100, after: $after) {{ nodes {{ {_VARIANT_FIELDS} }}"
    " pageInfo { hasNextPage endCursor } } } }"
)
BULK_PRODUCTS = (
    f"{{ products {{ edges {{ node {{ {_PRODUCT_FIELDS}"
    f" variants {{ edges {{ node {{ {_VARIANT_FIELDS} }} }} }} }} }} }} }}"
)
_BULK_FIELDS = "id status errorCode createdAt completedAt objectCount url partialDataUrl query"
BULK_RUN = (
    "mutation ReconcileBulk($query: String!) { bulkOperationRunQuery(query: $query) {"
    f" bulkOperation {{ {_BULK_FIELDS} }} userErrors {{ field message code }} }} }}"
)
BULK_NODE = f"query BulkStatus($id: ID!) {{ node(id: $id) {{ ... on BulkOperation {{ {_BULK_FIELDS} }} }} }}"
BULK_CURRENT = f"query CurrentBulk {{ currentBulkOperation {{ {_BULK_FIELDS} }} }}"
SUBSCRIPTIONS = (
    "query Subscriptions($after: String) { webhookSubscriptions(first: 100, after: $after) {"
    " edges { node { id topic format endpoint { __typename ... on WebhookHttpEndpoint { callbackUrl } } } }"
    " pageInfo { hasNextPage endCursor } } }"
)
SUBSCRIPTION_CREATE = (
    "mutation Subscribe($topic: WebhookSubscriptionTopic!, $sub: WebhookSubscriptionInput!) {"
    " webhookSubscriptionCreate(topic: $topic, webhookSubscription: $sub) {"
    " webhookSubscription { id topic } userErrors { field message } } }"
)
SUBSCRIPTION_DELETE = (
    "mutation Unsubscribe($id: ID!) { webhookSubscriptionDelete(id: $id) {"
    " deletedWebhookSubscriptionId userErrors { field message } } }"
)
