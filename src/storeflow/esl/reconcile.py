"""Pure reconciliation policy: Shopify's catalogue (GraphQL nodes) vs our `products` rows, per variant.

No I/O here. `remote_product` turns an Admin API product node (a page's or a bulk file's) into the
same variant rows a webhook produces (`transform_variant`), so a variant compares equal exactly when
its label would not change; `diff_products` decides per product what reconciliation does:

- ``upsert``: a variant is missing, changed, or stored ones are gone from Shopify's product
  (the ingest function removes those), sent through the webhook path;
- ``delete``: the product is absent from a full listing (only when what we hold is older than the
  listing's snapshot, so a product created during the listing is never removed);
- ``deactivate``: the product is ARCHIVED or DRAFT and the mapping's rule is ``remove``.

Shopify's ``updatedAt`` decides: when what we hold is newer than what the listing shows (a webhook
arrived after the snapshot), the product is skipped and counted as ``skipped_newer``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from storeflow.esl.transform import parse_id, parse_timestamp, transform_variant

LABEL_FIELDS = ("pn", "pp", "sku", "barcode", "pim", "inventory_item_id")
_VARIANT_IMAGE = "variant-image"


@dataclass(frozen=True)
class RemoteProduct:
    product_id: str
    updated_at: datetime
    status: str  # ACTIVE | ARCHIVED | DRAFT
    variants: tuple[dict[str, Any], ...]  # transform_variant rows
    node: Mapping[str, Any] = field(compare=False, repr=False)

    def doc(self) -> dict[str, Any]:
        """The ingest function's ``product`` document (what a webhook of this product would give)."""
        return {
            "product_id": self.product_id,
            "updated_at": self.updated_at.isoformat(),
            "variants": list(self.variants),
        }


@dataclass(frozen=True)
class StoredVariant:
    product_id: str
    variant_id: str
    inventory_item_id: str | None
    barcode: str | None
    sku: str | None
    pn: str | None
    pp: str | None
    pim: str | None
    status: str  # valid | invalid | deleted
    source_updated_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StoredVariant:
        return cls(
            product_id=row["source_id"],
            variant_id=row["source_variant_id"],
            inventory_item_id=row["inventory_item_id"],
            barcode=row["barcode"],
            sku=row["sku"],
            pn=row["pn"],
            pp=row["pp"],
            pim=row["pim"],
            status=row["status"],
            source_updated_at=row["source_updated_at"],
        )


def _url(value: Any) -> str | None:
    return value.get("url") if isinstance(value, Mapping) else None


def remote_product(node: Mapping[str, Any]) -> RemoteProduct:
    """An Admin API Product node (``variants`` as ``{nodes: [...]}`` or a list) -> RemoteProduct.

    Raises FieldError naming the product when an id or ``updatedAt`` is unusable.
    """
    product_id = parse_id(node.get("id"), "product id")
    updated_at = parse_timestamp(node.get("updatedAt"), f"product {product_id} updatedAt")
    featured = _url(node.get("featuredImage"))
    raw_variants = node.get("variants") or []
    if isinstance(raw_variants, Mapping):
        raw_variants = raw_variants.get("nodes") or [e.get("node") for e in raw_variants.get("edges") or []]
    rows = []
    for variant in raw_variants:
        image = _url(variant.get("image"))
        product = {
            "title": node.get("title"),
            "image": {"src": featured} if featured else None,
            "images": [{"id": _VARIANT_IMAGE, "src": image}] if image else [],
        }
        inventory = (variant.get("inventoryItem") or {}).get("id")
        rest_variant = {
            "id": parse_id(variant.get("id"), f"product {product_id} variant id"),
            "title": variant.get("title"),
            "price": variant.get("price"),
            "sku": variant.get("sku"),
            "barcode": variant.get("barcode"),
            "inventory_item_id": parse_id(inventory, "inventoryItem id") if inventory else None,
            "image_id": _VARIANT_IMAGE if image else None,
        }
        rows.append(transform_variant(product, rest_variant))
    return RemoteProduct(product_id, updated_at, str(node.get("status") or "ACTIVE").upper(), tuple(rows), node)


def group_bulk_lines(lines: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A bulk operation's JSONL objects -> product nodes with their ``variants`` (children carry
    ``__parentId`` and may come after other parents' lines, or before their parent's)."""
    products: dict[str, dict[str, Any]] = {}
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        parent = line.get("__parentId")
        if parent is None:
            products[str(line["id"])] = {**line, "variants": []}
        else:
            children[str(parent)].append({k: v for k, v in line.items() if k != "__parentId"})
    for parent, items in children.items():
        if parent in products:
            products[parent]["variants"].extend(items)
    return list(products.values())


@dataclass(frozen=True)
class Change:
    kind: str  # create | update | delete
    product_id: str
    variant_id: str
    fields: tuple[tuple[str, Any, Any], ...] = ()  # (name, ours, Shopify's)

    def describe(self) -> str:
        what = ", ".join(f"{name} {old!r} -> {new!r}" for name, old, new in self.fields)
        return f"{self.kind:<7} product {self.product_id} variant {self.variant_id}" + (f": {what}" if what else "")


@dataclass(frozen=True)
class Action:
    kind: str  # upsert | delete | deactivate
    product_id: str
    changes: tuple[Change, ...]
    remote: RemoteProduct | None = None


@dataclass
class Diff:
    actions: list[Action] = field(default_factory=list)
    unchanged: int = 0
    skipped_newer: int = 0

    def count(self, kind: str) -> int:
        return sum(1 for a in self.actions for c in a.changes if c.kind == kind)

    @property
    def drift(self) -> int:
        return sum(len(a.changes) for a in self.actions)


def variant_changes(ours: StoredVariant, theirs: Mapping[str, Any]) -> tuple[tuple[str, Any, Any], ...]:
    """The label fields that differ between our row and Shopify's variant row."""
    return tuple(
        (name, getattr(ours, name), theirs.get(name))
        for name in LABEL_FIELDS
        if getattr(ours, name) != theirs.get(name)
    )


def diff_products(
    stored: Iterable[StoredVariant],
    remote: Iterable[RemoteProduct],
    *,
    full: bool,
    snapshot_at: datetime | None = None,
    inactive: str = "remove",
) -> Diff:
    """What reconciliation does, per product (see the module docstring for the rules)."""
    ours: dict[str, dict[str, StoredVariant]] = defaultdict(dict)
    for held_row in stored:
        ours[held_row.product_id][held_row.variant_id] = held_row
    diff = Diff()
    seen: set[str] = set()
    for product in remote:
        seen.add(product.product_id)
        held = ours.get(product.product_id, {})
        live = [v for v in held.values() if v.status != "deleted"]
        newest = max((v.source_updated_at for v in held.values() if v.source_updated_at), default=None)
        if newest is not None and newest > product.updated_at:
            diff.skipped_newer += max(1, len(product.variants))
            continue
        if product.status != "ACTIVE" and inactive == "remove":
            gone = tuple(Change("delete", product.product_id, v.variant_id) for v in live)
            if gone:
                diff.actions.append(Action("deactivate", product.product_id, gone, product))
            continue
        changes: list[Change] = []
        for row in product.variants:
            mine = held.get(row["variant_id"])
            if mine is None or mine.status == "deleted":
                changes.append(Change("create", product.product_id, row["variant_id"]))
                continue
            fields = variant_changes(mine, row)
            if fields:
                changes.append(Change("update", product.product_id, row["variant_id"], fields))
            else:
                diff.unchanged += 1
        theirs = {row["variant_id"] for row in product.variants}
        changes += [Change("delete", product.product_id, v.variant_id) for v in live if v.variant_id not in theirs]
        if changes:
            diff.actions.append(Action("upsert", product.product_id, tuple(changes), product))
    if full:
        for product_id, held in ours.items():
            if product_id in seen:
                continue
            live = [v for v in held.values() if v.status != "deleted"]
            newest = max((v.source_updated_at for v in held.values() if v.source_updated_at), default=None)
            if not live:
                continue
            if snapshot_at is not None and newest is not None and newest >= snapshot_at:
                diff.skipped_newer += len(live)  # created or changed after the listing began
                continue
            diff.actions.append(
                Action("delete", product_id, tuple(Change("delete", product_id, v.variant_id) for v in live))
            )
    return diff


def incremental_since(
    high_water: datetime | None, newest_stored: datetime | None, overlap_seconds: float
) -> datetime | None:
    """Where an incremental run starts: the last successful run's high-water mark, else the newest
    product we hold, minus the overlap (None: list everything)."""
    start = high_water or newest_stored
    return start - timedelta(seconds=overlap_seconds) if start else None


def search_query(since: datetime | None) -> str | None:
    """Shopify search syntax for "updated after ``since``" (UTC, seconds)."""
    if since is None:
        return None
    return f"updated_at:>'{since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}'"
