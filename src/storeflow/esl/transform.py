"""Pure spec-002 logic: webhook signatures, Shopify payload -> Hipoink product, validation, coalescing.

No I/O here. The webhook router and the worker call these; unit tests drive them with tables.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, Protocol, TypeVar

TOPICS = ("products/create", "products/update", "products/delete", "inventory_levels/update")
PC_SOURCES = ("barcode", "sku", "variant_id")
DEFAULT_PC_FALLBACK = ["barcode", "sku", "variant_id"]
# Hipoink's optional product fields (a mapping may send stock in one of them)
HIPOINK_OPTIONAL_FIELDS = (
    *("pi", "pim", "ps", "pg", "pu", "vp", "pop", "po", "pm", "promotion", "pqr", "extend"),
    *(f"f{i}" for i in range(1, 17)),
)
MAX_PRICE = Decimal("999999999")
MAX_TEXT = 255
# What PostgreSQL refuses although Python accepts it (a refusal would be a 503 on every Shopify retry):
# ids beyond 64 bits, quantities beyond Shopify's own limit (their sum goes into a bigint), keys too
# long for a btree index row (hashed instead), NUL in text and lone surrogates (text and jsonb refuse both).
MAX_ID = 2**64 - 1
MAX_AVAILABLE = 1_000_000_000
MAX_KEY = 255
_GID = re.compile(r"^gid://shopify/\w+/(\d+)$")
_SURROGATE = re.compile("[\ud800-\udfff]")


# ---------------------------------------------------------------- signatures


def sign_body(secret: str | bytes, body: bytes) -> str:
    """Shopify's X-Shopify-Hmac-Sha256: base64(HMAC-SHA256(secret, raw body))."""
    key = secret.encode() if isinstance(secret, str) else secret
    return base64.b64encode(hmac.new(key, body, hashlib.sha256).digest()).decode()


def verify_hmac(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """True when ``header`` is the signature of the exact ``body`` bytes (constant-time compare)."""
    if not header or not secret:
        return False
    expected = sign_body(secret, body).encode()
    return hmac.compare_digest(expected, header.strip().encode())


# ---------------------------------------------------------------- field normalisation


class FieldError(ValueError):
    """A payload value that cannot be used; the message says which and why."""


def parse_id(value: Any, name: str) -> str:
    """A Shopify id as a decimal string. Floats are refused: ids exceed 2^53 and would lose digits."""
    if isinstance(value, bool) or value is None:
        raise FieldError(f"{name} is missing")
    if isinstance(value, float):
        raise FieldError(f"{name} {value!r} is a float; ids must be exact integers")
    if isinstance(value, str):
        text = value.strip()
        match = _GID.match(text)
        if match:
            text = match.group(1)
        if not (text.isascii() and text.isdigit()):
            raise FieldError(f"{name} {value!r} is not an id")
        value = int(text) if len(text.lstrip("0")) <= 20 else MAX_ID + 1
    if not isinstance(value, int):
        raise FieldError(f"{name} {value!r} is not an id")
    if value <= 0:
        raise FieldError(f"{name} {value} is not a positive id")
    if value > MAX_ID:
        raise FieldError(f"{name} is larger than a 64-bit id")
    return str(value)


def parse_timestamp(value: Any, name: str = "updated_at") -> datetime:
    """An ISO-8601 timestamp with offset (Shopify's format); naive values are taken as UTC."""
    if not isinstance(value, str) or not value.strip():
        raise FieldError(f"{name} is missing")
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise FieldError(f"{name} {value!r} is not an ISO-8601 timestamp") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def pg_timestamp(when: datetime, name: str = "updated_at") -> str:
    """ISO text PostgreSQL accepts: the offset kept unless it is beyond PostgreSQL's +-15:59, then UTC."""
    offset = when.utcoffset()
    if offset is None or abs(offset) < timedelta(hours=16):
        return when.isoformat()
    try:
        return when.astimezone(UTC).isoformat()
    except OverflowError as exc:
        raise FieldError(f"{name} {when.isoformat()!r} is out of range") from exc


def normalise_price(value: Any) -> str:
    """A price as a plain decimal string with at least two decimals: "19.9" -> "19.90", "1e3" -> "1000.00"."""
    if isinstance(value, bool) or value is None or (isinstance(value, str) and not value.strip()):
        raise FieldError("pp: price is missing")
    if isinstance(value, float):
        value = repr(value)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise FieldError(f"pp: price {value!r} is not a decimal number") from exc
    if not amount.is_finite():
        raise FieldError(f"pp: price {value!r} is not a finite number")
    if amount < 0:
        raise FieldError(f"pp: price {value!r} is negative")
    if amount > MAX_PRICE:
        raise FieldError(f"pp: price {value!r} is too large")
    amount = amount.normalize()
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        amount = amount.quantize(Decimal("0.01"))
    return format(amount, "f")


def clean_text(value: Any) -> str | None:
    """Strip a string; None for null, empty or whitespace-only (real payloads carry all three).

    NULs are dropped and lone surrogates become U+FFFD: PostgreSQL text holds neither
    (`bad_unicode` tells the caller that a value had a surrogate, so its variant can be refused)."""
    if value is None or isinstance(value, bool):
        return None
    text = scrub_text(str(value)).strip()
    return text or None


def scrub_text(text: str) -> str:
    """``text`` without NULs and with each lone surrogate replaced by U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "")
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


def bad_unicode(value: Any) -> bool:
    """True for a string holding a lone surrogate (JSON allows ``"\\ud800"``; UTF-8 has no such character)."""
    return isinstance(value, str) and _SURROGATE.search(value) is not None


def scrub(value: Any) -> Any:
    """A JSON value with every string (keys included) made storable by `scrub_text`."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {scrub_text(str(k)): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def bounded_key(value: str | None, limit: int = MAX_KEY) -> str | None:
    """A header value as an index key: itself when short, else ``sha256:<hex>`` of it (a btree row
    holds about 2.7 kB; a 3 kB X-Shopify-Event-Id made every retry of its delivery fail)."""
    if value is None:
        return None
    text = scrub_text(value.strip())
    if not text:
        return None
    if len(text) <= limit:
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- Shopify payload -> rows


@dataclass
class Parsed:
    """What a webhook body becomes: a kind the database function knows, and its document."""

    kind: str  # product | delete | inventory | invalid
    doc: dict[str, Any]
    mismatch: bool = False  # the body is not the header topic's shape

    @property
    def reason(self) -> str | None:
        return self.doc.get("reason") if self.kind == "invalid" else None


def invalid(reason: str) -> Parsed:
    return Parsed("invalid", {"reason": reason[:1000]})


def product_name(title: str | None, variant_title: str | None) -> str | None:
    """`pn`: the product title, plus the variant title unless it is Shopify's "Default Title"."""
    base = clean_text(title)
    extra = clean_text(variant_title)
    if extra and extra.lower() != "default title":
        return f"{base} - {extra}" if base else extra
    return base


def variant_image(product: Mapping[str, Any], variant: Mapping[str, Any], variant_id: str) -> str | None:
    """`pim`: the variant's own image, else the product's first image."""
    images = [i for i in product.get("images") or [] if isinstance(i, Mapping)]
    image_id = variant.get("image_id")
    if image_id is not None and not isinstance(image_id, bool):
        for image in images:
            if str(image.get("id")) == str(image_id) and clean_text(image.get("src")):
                return clean_text(image.get("src"))
    for image in images:
        ids = image.get("variant_ids") or []
        if any(str(v) == variant_id for v in ids) and clean_text(image.get("src")):
            return clean_text(image.get("src"))
    main = product.get("image")
    if isinstance(main, Mapping) and clean_text(main.get("src")):
        return clean_text(main.get("src"))
    ordered = sorted(images, key=lambda i: p if isinstance(p := i.get("position"), int) else 1 << 30)
    for image in ordered:
        if clean_text(image.get("src")):
            return clean_text(image.get("src"))
    return None


def transform_variant(product: Mapping[str, Any], variant: Mapping[str, Any]) -> dict[str, Any]:
    """One Shopify variant -> the label fields (everything but `pc`, which the mapping's fallback picks)."""
    errors: list[str] = []
    try:
        variant_id = parse_id(variant.get("id"), "variant id")
    except FieldError as exc:
        raise FieldError(f"a variant has no usable id: {exc}") from exc
    inventory_item_id = None
    if variant.get("inventory_item_id") is not None:
        try:
            inventory_item_id = parse_id(variant.get("inventory_item_id"), "inventory_item_id")
        except FieldError as exc:
            errors.append(str(exc))
    barcode = clean_text(variant.get("barcode"))
    sku = clean_text(variant.get("sku"))
    pn = product_name(product.get("title"), variant.get("title"))
    for what, raw in (
        ("pn: title", product.get("title")),
        ("pn: variant title", variant.get("title")),
        ("barcode", variant.get("barcode")),
        ("sku", variant.get("sku")),
    ):
        if bad_unicode(raw):
            errors.append(f"{what} is not valid Unicode (a lone surrogate)")
    if not pn:
        errors.append("pn: product title is empty")
    elif len(pn) > MAX_TEXT:
        pn = pn[:MAX_TEXT]
    try:
        pp: str | None = normalise_price(variant.get("price"))
    except FieldError as exc:
        pp = None
        errors.append(str(exc))
    candidates = {
        "barcode": barcode if barcode and len(barcode) <= 64 else None,
        "sku": sku if sku and len(sku) <= 64 else None,
        "variant_id": variant_id,
    }
    pim = variant_image(product, variant, variant_id)
    if pim is not None and "\ufffd" in pim and _image_has_bad_unicode(product):
        errors.append("pim: image src is not valid Unicode (a lone surrogate)")
    return {
        "variant_id": variant_id,
        "inventory_item_id": inventory_item_id,
        "barcode": barcode,
        "sku": sku,
        "pn": pn,
        "pp": pp,
        "pi": sku[:MAX_TEXT] if sku else None,
        "pim": pim,
        "candidates": candidates,
        "errors": "; ".join(errors) or None,
    }


def _image_has_bad_unicode(product: Mapping[str, Any]) -> bool:
    images = [product.get("image"), *(product.get("images") or [])]
    return any(isinstance(i, Mapping) and bad_unicode(i.get("src")) for i in images)


def parse_webhook(topic: str, body: bytes, fallback_updated_at: datetime | None = None) -> Parsed:
    """Parse and validate a verified webhook body for ``topic``. Never raises: bad input -> `invalid`.

    The HMAC covers the body only, so the body decides what a delivery is: a body of another
    topic's shape (a product sent as products/delete, say) is refused as a topic mismatch."""
    if topic not in TOPICS:
        return invalid(f"unsupported topic {topic!r}")
    try:
        data = json.loads(body)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        return invalid(f"malformed JSON: {exc}")
    except RecursionError:
        return invalid("malformed JSON: nested too deeply")
    if not isinstance(data, dict):
        return invalid(f"payload is a JSON {type(data).__name__}, not an object")
    mismatch = topic_mismatch(topic, data)
    if mismatch:
        return Parsed("invalid", {"reason": mismatch}, mismatch=True)
    try:
        if topic == "products/delete":
            return Parsed("delete", {"product_id": parse_id(data.get("id"), "product id")})
        if topic == "inventory_levels/update":
            return _parse_inventory(data, fallback_updated_at)
        return _parse_product(data, fallback_updated_at)
    except FieldError as exc:
        return invalid(str(exc))


# keys only a product (create/update) payload has; a products/delete payload is {"id": ...}
_PRODUCT_KEYS = frozenset({"variants", "title", "handle", "images", "options", "body_html", "vendor"})
_DELETE_KEYS = frozenset({"id", "admin_graphql_api_id"})


def body_shape(data: Mapping[str, Any]) -> str:
    """What a JSON object looks like: product | delete | inventory | unknown."""
    keys = set(data)
    if keys & _PRODUCT_KEYS:
        return "product"
    if "inventory_item_id" in keys:
        return "inventory"
    if "id" in keys and keys <= _DELETE_KEYS:
        return "delete"
    return "unknown"


def topic_mismatch(topic: str, data: Mapping[str, Any]) -> str | None:
    """Why ``data`` cannot be the body of a ``topic`` delivery, or None when it may be."""
    shape = body_shape(data)
    expected = {"products/delete": "delete", "inventory_levels/update": "inventory"}.get(topic, "product")
    if shape == expected or (shape == "unknown" and (expected != "delete" or set(data) <= _DELETE_KEYS)):
        return None  # an unknown shape is not another topic's: the field checks say what is missing
    holds = {"product": "a product", "delete": "only a product id", "inventory": "an inventory level"}
    found = holds.get(shape, "fields besides the id")
    if expected == "delete":
        return f"topic mismatch: {topic} must carry only a product id; the body holds {found}"
    if expected == "product":
        return f"topic mismatch: {topic} carries no product (no variants); the body holds {found}"
    return f"topic mismatch: {topic} carries no inventory level; the body holds {found}"


def _updated_at(data: Mapping[str, Any], fallback: datetime | None) -> datetime:
    if data.get("updated_at") is None and fallback is not None:
        return fallback
    return parse_timestamp(data.get("updated_at"))


def _parse_product(data: Mapping[str, Any], fallback: datetime | None) -> Parsed:
    product_id = parse_id(data.get("id"), "product id")
    updated_at = _updated_at(data, fallback)
    variants = data.get("variants")
    if not isinstance(variants, list) or not variants:
        raise FieldError("product has no variants")
    rows = []
    seen: set[str] = set()
    for variant in variants:
        if not isinstance(variant, Mapping):
            raise FieldError("a variant is not an object")
        row = transform_variant(data, variant)
        if row["variant_id"] in seen:
            raise FieldError(f"variant {row['variant_id']} appears twice")
        seen.add(row["variant_id"])
        rows.append(row)
    return Parsed("product", {"product_id": product_id, "updated_at": pg_timestamp(updated_at), "variants": rows})


def _parse_inventory(data: Mapping[str, Any], fallback: datetime | None) -> Parsed:
    available = data.get("available")
    if available is not None and (isinstance(available, bool) or not isinstance(available, int)):
        raise FieldError(f"available {available!r} is not an integer")
    if available is not None and abs(available) > MAX_AVAILABLE:
        raise FieldError(f"available is out of range (Shopify allows +-{MAX_AVAILABLE:,})")
    location = data.get("location_id")
    return Parsed(
        "inventory",
        {
            "inventory_item_id": parse_id(data.get("inventory_item_id"), "inventory_item_id"),
            "location_id": parse_id(location, "location_id") if location is not None else "0",
            "available": available,
            "updated_at": pg_timestamp(_updated_at(data, fallback)),
        },
    )


# ---------------------------------------------------------------- a verified delivery -> its inbox row

# headers never kept in the inbox: credentials, and the signature (beside the raw body it would let
# anyone who can read the inbox replay the delivery)
DROP_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-shopify-hmac-sha256"})


def shop_domain(headers: Mapping[str, str]) -> str:
    """The X-Shopify-Shop-Domain a delivery names, lower case and short enough for an index."""
    return bounded_key((headers.get("x-shopify-shop-domain") or "").lower()) or ""


def header_time(value: str | None) -> datetime | None:
    """X-Shopify-Triggered-At as an aware datetime in UTC; None when absent or unusable."""
    if not value:
        return None
    try:
        return parse_timestamp(value, "X-Shopify-Triggered-At").astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def body_hash(shop: str, topic: str, body: bytes) -> str:
    """sha256 over (shop, topic, raw body): the dedupe key that a changed X-Shopify-Event-Id cannot evade.
    Migration 0303 computes the same over stored rows; keep the two in step."""
    return hashlib.sha256(f"{shop}\n{topic}\n".encode() + body).hexdigest()


@dataclass(frozen=True)
class Prepared:
    """A verified delivery as `esl_ingest_webhook` takes it (``delivery``), plus what the log names."""

    shop: str
    topic: str
    parsed: Parsed
    delivery: dict[str, Any]


def prepare_delivery(headers: Mapping[str, str], body: bytes, path_topic: str | None, now: datetime) -> Prepared:
    """The one place a verified delivery is made storable: everything PostgreSQL would refuse is
    normalised or turned into an `invalid` record here, so the database answers 2xx for every
    signed delivery. ``headers`` have lower-case names; the X-Shopify-Topic header wins over the path."""
    topic = bounded_key((headers.get("x-shopify-topic") or "").lower()) or path_topic or ""
    shop = shop_domain(headers)
    triggered_at = header_time(headers.get("x-shopify-triggered-at"))
    parsed = parse_webhook(topic, body, fallback_updated_at=triggered_at or now)
    event_id = bounded_key(headers.get("x-shopify-event-id"))
    webhook_id = bounded_key(headers.get("x-shopify-webhook-id"))
    meta = {
        "shop": shop,
        "topic": topic,
        "event_id": event_id,
        "webhook_id": webhook_id,
        # a delivery refused for its topic claims no event id: a forged copy must not make the
        # genuine delivery of that event a duplicate
        "dedupe_key": None if parsed.mismatch else (event_id or webhook_id),
        "body_hash": body_hash(shop, topic, body),
        "triggered_at": triggered_at.isoformat() if triggered_at else None,
        "api_version": bounded_key(headers.get("x-shopify-api-version")),
        "headers": {k: v for k, v in headers.items() if k not in DROP_HEADERS},
    }
    # the document's text went through clean_text (or repr, in reasons) already; headers are as sent
    delivery = {"meta": scrub(meta), "raw": base64.b64encode(body).decode(), "kind": parsed.kind, "doc": parsed.doc}
    return Prepared(shop, topic, parsed, delivery)


def refused_delivery(prepared: Prepared, reason: str) -> dict[str, Any]:
    """The `invalid` record of a delivery the database refused although `prepare_delivery` passed it."""
    meta = {**prepared.delivery["meta"], "headers": {}}
    return {**prepared.delivery, "meta": meta, "kind": "invalid", "doc": {"reason": scrub_text(reason)[:1000]}}


# ---------------------------------------------------------------- send time


def hipoink_product(row: Mapping[str, Any], stock_field: str | None = None) -> dict[str, str]:
    """The Hipoink product for a stored variant row (keys pc, pn, pp and the optional ones present)."""
    product = {"pc": row["pc"], "pn": row["pn"], "pp": row["pp"]}
    for key in ("pi", "pim"):
        if row.get(key):
            product[key] = row[key]
    if stock_field and row.get("stock") is not None:
        product[stock_field] = str(row["stock"])
    return product


def validate_hipoink_product(product: Mapping[str, Any]) -> list[str]:
    """Why Hipoink would refuse this product (empty when it is fine)."""
    problems = []
    for key, what in (("pc", "product code"), ("pn", "name"), ("pp", "price")):
        value = product.get(key)
        if not isinstance(value, str) or not value.strip():
            problems.append(f"{key}: {what} is missing")
    pp = product.get("pp")
    if isinstance(pp, str) and pp.strip():
        try:
            normalise_price(pp)
        except FieldError as exc:
            problems.append(str(exc))
    return problems


class QueueItem(Protocol):
    """What coalescing reads of a claimed item (`storeflow.esl.store.ClaimedItem` is one)."""

    @property
    def id(self) -> int: ...

    @property
    def store_code(self) -> str: ...

    @property
    def product_id(self) -> int: ...


ItemT = TypeVar("ItemT", bound=QueueItem)


@dataclass
class Coalesced(Generic[ItemT]):
    """Claimed queue items grouped per product: one winner (the latest) per product."""

    winners: list[ItemT] = field(default_factory=list)
    superseded: dict[int, int] = field(default_factory=dict)  # item id -> winner id


def coalesce(items: Iterable[ItemT]) -> Coalesced[ItemT]:
    """Latest item (highest id) per (store_code, product_id) wins; the rest are satisfied by it."""
    best: dict[tuple[str, int], ItemT] = {}
    losers: list[tuple[tuple[str, int], int]] = []
    for item in items:
        key = (item.store_code, item.product_id)
        current = best.get(key)
        if current is None or item.id > current.id:
            if current is not None:
                losers.append((key, current.id))
            best[key] = item
        else:
            losers.append((key, item.id))
    out: Coalesced[ItemT] = Coalesced(winners=sorted(best.values(), key=lambda i: i.id))
    for key, item_id in losers:
        out.superseded[item_id] = best[key].id
    return out


def chunks(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [seq[i : i + size] for i in range(0, len(seq), max(1, size))]
