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
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

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
_GID = re.compile(r"^gid://shopify/\w+/(\d+)$")


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
    if isinstance(value, int):
        if value <= 0:
            raise FieldError(f"{name} {value} is not a positive id")
        return str(value)
    if isinstance(value, float):
        raise FieldError(f"{name} {value!r} is a float; ids must be exact integers")
    if isinstance(value, str):
        text = value.strip()
        match = _GID.match(text)
        if match:
            text = match.group(1)
        if text.isdigit() and int(text) > 0:
            return str(int(text))
    raise FieldError(f"{name} {value!r} is not an id")


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
    """Strip a string; None for null, empty or whitespace-only (real payloads carry all three)."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


# ---------------------------------------------------------------- Shopify payload -> rows


@dataclass
class Parsed:
    """What a webhook body becomes: a kind the database function knows, and its document."""

    kind: str  # product | delete | inventory | invalid
    doc: dict[str, Any]

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
    return {
        "variant_id": variant_id,
        "inventory_item_id": inventory_item_id,
        "barcode": barcode,
        "sku": sku,
        "pn": pn,
        "pp": pp,
        "pi": sku[:MAX_TEXT] if sku else None,
        "pim": variant_image(product, variant, variant_id),
        "candidates": candidates,
        "errors": "; ".join(errors) or None,
    }


def parse_webhook(topic: str, body: bytes, fallback_updated_at: datetime | None = None) -> Parsed:
    """Parse and validate a verified webhook body for ``topic``. Never raises: bad input -> `invalid`."""
    if topic not in TOPICS:
        return invalid(f"unsupported topic {topic!r}")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return invalid(f"malformed JSON: {exc}")
    except RecursionError:
        return invalid("malformed JSON: nested too deeply")
    if not isinstance(data, dict):
        return invalid(f"payload is a JSON {type(data).__name__}, not an object")
    try:
        if topic == "products/delete":
            return Parsed("delete", {"product_id": parse_id(data.get("id"), "product id")})
        if topic == "inventory_levels/update":
            return _parse_inventory(data, fallback_updated_at)
        return _parse_product(data, fallback_updated_at)
    except FieldError as exc:
        return invalid(str(exc))


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
    return Parsed("product", {"product_id": product_id, "updated_at": updated_at.isoformat(), "variants": rows})


def _parse_inventory(data: Mapping[str, Any], fallback: datetime | None) -> Parsed:
    available = data.get("available")
    if available is not None and (isinstance(available, bool) or not isinstance(available, int)):
        raise FieldError(f"available {available!r} is not an integer")
    location = data.get("location_id")
    return Parsed(
        "inventory",
        {
            "inventory_item_id": parse_id(data.get("inventory_item_id"), "inventory_item_id"),
            "location_id": parse_id(location, "location_id") if location is not None else "0",
            "available": available,
            "updated_at": _updated_at(data, fallback).isoformat(),
        },
    )


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


@dataclass
class Coalesced:
    """Claimed queue items grouped per product: one winner (the latest) per product."""

    winners: list[dict[str, Any]] = field(default_factory=list)
    superseded: dict[int, int] = field(default_factory=dict)  # item id -> winner id


def coalesce(items: Iterable[Mapping[str, Any]]) -> Coalesced:
    """Latest item (highest id) per (store_code, product_id) wins; the rest are satisfied by it."""
    best: dict[tuple[str, int], dict[str, Any]] = {}
    losers: list[tuple[tuple[str, int], int]] = []
    for item in items:
        key = (item["store_code"], item["product_id"])
        current = best.get(key)
        if current is None or item["id"] > current["id"]:
            if current is not None:
                losers.append((key, current["id"]))
            best[key] = dict(item)
        else:
            losers.append((key, item["id"]))
    out = Coalesced(winners=sorted(best.values(), key=lambda i: i["id"]))
    for key, item_id in losers:
        out.superseded[item_id] = best[key]["id"]
    return out


def chunks(seq: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [seq[i : i + size] for i in range(0, len(seq), max(1, size))]


# ---------------------------------------------------------------- Hipoink replies


@dataclass(frozen=True)
class Verdict:
    ok: bool
    transient: bool = False
    error: str | None = None
    http_status: int | None = None
    error_code: int | None = None
    retry_after: float | None = None


def judge_reply(status: int, body: bytes, retry_after: float | None = None) -> Verdict:
    """HTTP status + body -> success, transient or permanent. HTTP 200 with error_code != 0 is a failure."""
    if status == 429 or status == 408 or status >= 500:
        return Verdict(False, True, f"HTTP {status}", status, None, retry_after)
    if status >= 400:
        return Verdict(False, False, f"HTTP {status}: {_snippet(body)}", status)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        # a truncated/garbled 2xx body: the request may not have been applied, sending again is safe
        return Verdict(False, True, f"HTTP {status} with an unreadable body: {_snippet(body)}", status)
    if not isinstance(data, dict) or "error_code" not in data:
        return Verdict(False, True, f"HTTP {status} without error_code: {_snippet(body)}", status)
    try:
        code = int(data["error_code"])
    except (TypeError, ValueError):
        return Verdict(False, False, f"HTTP {status} with error_code {data.get('error_code')!r}", status)
    if code != 0:
        message = data.get("error_msg") or data.get("msg") or ""
        return Verdict(False, False, f"error_code {code}: {message}".rstrip(": "), status, code)
    return Verdict(True, http_status=status, error_code=0)


def _snippet(body: bytes, limit: int = 200) -> str:
    return body[:limit].decode("utf-8", "replace").strip()


# ---------------------------------------------------------------- rate limit


def next_slot(now: float, last: float | None, rate_per_second: float) -> float:
    """When the next request may start so requests are at least 1/rate apart."""
    if last is None or rate_per_second <= 0:
        return now
    return max(now, last + 1.0 / rate_per_second)
