"""The shopify-admin simulator's shop state: products, the cost bucket, bulk operations, control models."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

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


def rest_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def gid(kind: str, number: int | str) -> str:
    return f"gid://shopify/{kind}/{number}"


def gid_number(value: Any) -> int | None:
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
