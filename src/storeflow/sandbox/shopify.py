"""Shopify webhook sender (`storeflow sandbox shopify send`): realistic signed deliveries.

Payloads look like real ones: multi-variant products, images (some tied to variants), barcodes
and skus that are often null or empty, ids above 2^53, prices as strings, and bodies serialised
with Shopify's ``\\/`` escaping (so only a signature over the raw bytes verifies). Data is
deterministic per ``--seed``: products/create, products/update, products/delete and
inventory_levels/update with the same seed talk about the same products.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import random
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

app = typer.Typer(help="Send realistic signed Shopify webhooks to a URL.", no_args_is_help=True)

# The topics Shopify names in X-Shopify-Topic for what this sender simulates. Its own list and its own
# signing (not the receiver's): a receiver that verified wrongly must fail against this sender.
TOPICS = ("products/create", "products/update", "products/delete", "inventory_levels/update")
ID_BASE = 2**53 + 1  # every generated id is above 2^53, where floats lose digits
API_VERSION = "2025-07"
EPOCH = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
_COLOURS = ("Red", "Blue", "Black", "White", "Green")
_SIZES = ("S", "M", "L", "XL")
_NOUNS = ("Mug", "T-Shirt", "Notebook", "Candle", "Scarf", "Tote Bag", "Lamp", "Plant Pot", "Card Set", "Puzzle")
_ADJ = ("Classic", "Organic", "Vintage", "Deluxe", "Everyday", "Handmade", "Festive", "Minimal")


def sign_webhook(secret: str, body: bytes) -> str:
    """X-Shopify-Hmac-Sha256 as Shopify computes it: base64 of HMAC-SHA256 over the raw body, keyed
    with the app's secret."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def shopify_dumps(data: Any) -> bytes:
    """JSON the way Shopify sends it: compact, UTF-8, and ``/`` escaped as ``\\/``."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("/", "\\/").encode()


def product_ids(seed: int, index: int) -> dict[str, Any]:
    """The ids of product ``index`` of data set ``seed`` (stable across topics)."""
    base = ID_BASE + seed * 10**9 + index * 10
    return {
        "product_id": base,
        "variant_ids": [base + 10**12 + v for v in range(4)],
        "inventory_item_ids": [base + 2 * 10**12 + v for v in range(4)],
        "location_id": ID_BASE + 3 * 10**12 + seed,
    }


def make_product(seed: int, index: int, version: int = 0) -> dict[str, Any]:
    """Product ``index`` of data set ``seed`` at ``version`` (each version: newer updated_at, new prices)."""
    rng = random.Random(seed * 1_000_003 + index)
    ids = product_ids(seed, index)
    pid = ids["product_id"]
    n_variants = rng.choices([1, 2, 3, 4], weights=[5, 2, 2, 1])[0]
    title = f"{rng.choice(_ADJ)} {rng.choice(_NOUNS)} {index}"
    updated = EPOCH + timedelta(minutes=index, seconds=version * 7)
    stamp = updated.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S-00:00")
    images = []
    for k in range(rng.choice([0, 1, 1, 2, 3])):
        images.append(
            {
                "id": pid + 5 * 10**12 + k,
                "product_id": pid,
                "position": k + 1,
                "src": f"https://cdn.shopify.com/s/files/1/0612/3456/products/p{index}_{k}.jpg?v=1767600000",
                "variant_ids": [],
            }
        )
    variants = []
    for v in range(n_variants):
        vid = ids["variant_ids"][v]
        barcode = rng.choices([f"{rng.randrange(10**12, 10**13)}", None, "", "  "], weights=[55, 20, 20, 5])[0]
        sku = rng.choices([f"SKU-{seed}-{index}-{v}", None, ""], weights=[60, 20, 20])[0]
        cents = rng.choice([99, 50, 0, 95, 49])
        price = f"{rng.randrange(1, 120) + version}.{cents:02d}"
        image_id = None
        if images and rng.random() < 0.4:
            image = images[v % len(images)]
            image_id = image["id"]
            image["variant_ids"].append(vid)
        variants.append(
            {
                "id": vid,
                "product_id": pid,
                "title": "Default Title" if n_variants == 1 else f"{_COLOURS[v % 5]} / {_SIZES[v % 4]}",
                "price": price,
                "compare_at_price": None,
                "sku": sku,
                "barcode": barcode,
                "position": v + 1,
                "inventory_item_id": ids["inventory_item_ids"][v],
                "inventory_quantity": rng.randrange(0, 50),
                "image_id": image_id,
                "updated_at": stamp,
                "admin_graphql_api_id": f"gid://shopify/ProductVariant/{vid}",
            }
        )
    return {
        "id": pid,
        "title": title,
        "body_html": f"<p>{title} / made with care</p>",
        "vendor": "Sandbox Goods",
        "product_type": "Gifts",
        "handle": title.lower().replace(" ", "-"),
        "created_at": (EPOCH + timedelta(minutes=index)).strftime("%Y-%m-%dT%H:%M:%S-00:00"),
        "updated_at": stamp,
        "status": "active",
        "tags": "sandbox, storeflow",
        "admin_graphql_api_id": f"gid://shopify/Product/{pid}",
        "variants": variants,
        "options": [{"name": "Title", "values": [v["title"] for v in variants]}],
        "images": images,
        "image": images[0] if images else None,
    }


@dataclass
class Delivery:
    topic: str
    body: bytes
    headers: dict[str, str]
    product_index: int
    duplicate: bool = False


@dataclass
class Plan:
    deliveries: list[Delivery] = field(default_factory=list)
    latest: dict[int, dict[str, Any]] = field(default_factory=dict)  # product index -> newest payload


def build_deliveries(
    topic: str,
    count: int,
    secret: str,
    shop: str = "sandbox-shop.myshopify.com",
    seed: int = 0,
    start: int = 0,
    duplicates: float = 0.0,
    shuffle: bool = False,
) -> Plan:
    """``count`` signed deliveries of ``topic``. With ``shuffle``, products/update sends two versions
    of each product in random order (the newer must win); ``duplicates`` re-sends that fraction."""
    if topic not in TOPICS:
        raise ValueError(f"unknown topic {topic!r}; known: {', '.join(TOPICS)}")
    rng = random.Random(seed * 7919 + start + zlib.crc32(topic.encode()))
    plan = Plan()
    payloads: list[tuple[int, Any]] = []
    if topic == "products/update" and shuffle:
        for i in range(start, start + max(1, count // 2)):
            payloads += [(i, make_product(seed, i, version=1)), (i, make_product(seed, i, version=2))]
        payloads = payloads[:count] if count > 1 else payloads[:1]
    else:
        for i in range(start, start + count):
            if topic == "products/create":
                payloads.append((i, make_product(seed, i, version=0)))
            elif topic == "products/update":
                payloads.append((i, make_product(seed, i, version=1)))
            elif topic == "products/delete":
                payloads.append((i, {"id": product_ids(seed, i)["product_id"]}))
            else:
                ids = product_ids(seed, i)
                payloads.append(
                    (
                        i,
                        {
                            "inventory_item_id": ids["inventory_item_ids"][0],
                            "location_id": ids["location_id"],
                            "available": rng.choice([rng.randrange(0, 80), None]) if rng.random() < 0.1 else i % 37,
                            "updated_at": (EPOCH + timedelta(hours=1, seconds=i)).strftime("%Y-%m-%dT%H:%M:%S-00:00"),
                            "admin_graphql_api_id": f"gid://shopify/InventoryLevel/{ids['location_id']}"
                            f"?inventory_item_id={ids['inventory_item_ids'][0]}",
                        },
                    )
                )
    for index, payload in payloads:
        plan.latest[index] = payload
        body = shopify_dumps(payload)
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": shop,
            "X-Shopify-Hmac-Sha256": sign_webhook(secret, body),
            "X-Shopify-Webhook-Id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "X-Shopify-Event-Id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "X-Shopify-Triggered-At": datetime.now(UTC).isoformat(),
            "X-Shopify-API-Version": API_VERSION,
        }
        plan.deliveries.append(Delivery(topic, body, headers, index))
    if duplicates > 0:
        extra = [
            Delivery(d.topic, d.body, dict(d.headers), d.product_index, duplicate=True)
            for d in plan.deliveries
            if rng.random() < duplicates
        ]
        for dup in extra:
            position = rng.randrange(len(plan.deliveries) + 1) if shuffle else len(plan.deliveries)
            plan.deliveries.insert(position, dup)
    if shuffle:
        rng.shuffle(plan.deliveries)
    return plan


def webhook_url(url: str, topic: str) -> str:
    """A full webhook URL, or the app's base URL plus ``/webhooks/shopify/{topic}``."""
    if "/webhooks/" in url:
        return url
    return f"{url.rstrip('/')}/webhooks/shopify/{topic}"


@dataclass
class SendResult:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    acked_at: list[tuple[Delivery, float]] = field(default_factory=list)
    seconds: float = 0.0


async def send_deliveries(
    deliveries: list[Delivery],
    url: str,
    rate: float | None = None,
    concurrency: int = 16,
    client: httpx.AsyncClient | None = None,
) -> SendResult:
    """POST every delivery (at ``rate`` per second when given); record statuses and ack times."""
    result = SendResult()
    semaphore = asyncio.Semaphore(max(1, concurrency))
    own = client is None
    http = client or httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency))
    started = time.monotonic()

    async def one(position: int, delivery: Delivery) -> None:
        if rate:
            delay = started + position / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        async with semaphore:
            t0 = time.monotonic()
            try:
                response = await http.post(
                    webhook_url(url, delivery.topic), content=delivery.body, headers=delivery.headers
                )
            except httpx.HTTPError as exc:
                result.errors[type(exc).__name__] += 1
                return
            result.latencies_ms.append((time.monotonic() - t0) * 1000)
            result.statuses[response.status_code] += 1
            result.acked_at.append((delivery, time.time()))
            result.sent += 1

    try:
        await asyncio.gather(*(one(i, d) for i, d in enumerate(deliveries)))
    finally:
        if own:
            await http.aclose()
    result.seconds = time.monotonic() - started
    return result


def drop_deliveries(plan: Plan, share: float, seed: int = 0) -> tuple[list[Delivery], list[Delivery]]:
    """(sent, dropped): ``share`` of the changes never send their webhook (every copy of one is
    dropped together), as when Shopify gives up on a delivery."""
    if share <= 0:
        return plan.deliveries, []
    rng = random.Random(seed * 104_729 + 13)
    lost = {index for index in sorted(plan.latest) if rng.random() < share}
    return (
        [d for d in plan.deliveries if d.product_index not in lost],
        [d for d in plan.deliveries if d.product_index in lost],
    )


def apply_to_admin(admin_url: str, shop: str, topic: str, plan: Plan) -> None:
    """Make the Admin API simulator's shop hold what the plan's deliveries say (sent or dropped)."""
    if topic == "products/delete":
        body: dict[str, Any] = {"shop": shop, "delete": [str(p["id"]) for p in plan.latest.values()]}
    elif topic in ("products/create", "products/update"):
        body = {"shop": shop, "upsert": list(plan.latest.values())}
    else:
        return
    httpx.post(f"{admin_url.rstrip('/')}/_sandbox/mutate", json=body, timeout=60).raise_for_status()


@app.command("send")
def send(
    url: Annotated[str, typer.Option(help="storeflow's base URL, or a full /webhooks/shopify/... URL.")],
    topic: Annotated[str, typer.Option(help=f"One of: {', '.join(TOPICS)}.")],
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="SHOPIFY_WEBHOOK_SECRET",
            show_envvar=True,
            help="The Shopify app secret to sign with. Prefer the environment variable or --secret-file: "
            "a command line is visible to every user of the machine.",
        ),
    ] = None,
    secret_file: Annotated[
        Path | None,
        typer.Option(help="Read the secret from this file (its first line); wins over --secret and the variable."),
    ] = None,
    count: Annotated[int, typer.Option(min=1, help="Deliveries to send (before duplicates).")] = 10,
    rate: Annotated[float | None, typer.Option(help="Deliveries per second (default: as fast as possible).")] = None,
    duplicates: Annotated[float, typer.Option(min=0, max=1, help="Fraction re-delivered with the same ids.")] = 0.0,
    shuffle: Annotated[
        bool, typer.Option(help="Deliver out of order (products/update: two versions of each product).")
    ] = False,
    shop: Annotated[str, typer.Option(help="X-Shopify-Shop-Domain.")] = "sandbox-shop.myshopify.com",
    seed: Annotated[int, typer.Option(help="Data set; the same seed means the same products.")] = 0,
    start: Annotated[int, typer.Option(min=0, help="Index of the first product.")] = 0,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight.")] = 16,
    drop: Annotated[float, typer.Option(min=0, max=1, help="Share of changes that never send their webhook.")] = 0.0,
    admin_url: Annotated[
        str | None, typer.Option(help="Apply every change (dropped too) to this shopify-admin simulator first.")
    ] = None,
) -> None:
    """Send signed webhooks; print a JSON summary (statuses, duplicates, seconds)."""
    if topic not in TOPICS:
        raise typer.BadParameter(f"unknown topic {topic!r}; known: {', '.join(TOPICS)}", param_hint="--topic")
    signing = read_secret(secret_file) if secret_file is not None else (secret or "")
    if not signing:
        raise typer.BadParameter(
            "no secret: set SHOPIFY_WEBHOOK_SECRET, or pass --secret-file (or --secret)", param_hint="--secret"
        )
    plan = build_deliveries(topic, count, signing, shop, seed, start, duplicates, shuffle)
    if admin_url:
        apply_to_admin(admin_url, shop, topic, plan)
    deliveries, dropped = drop_deliveries(plan, drop, seed)
    result = asyncio.run(send_deliveries(deliveries, url, rate, concurrency))
    summary = {
        "topic": topic,
        "sent": result.sent,
        "duplicates": sum(d.duplicate for d in plan.deliveries),
        "dropped": len(dropped),
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "errors": dict(result.errors),
        "seconds": round(result.seconds, 3),
    }
    typer.echo(json.dumps(summary))
    if result.errors or any(code >= 300 for code in result.statuses):
        raise typer.Exit(1)


def read_secret(path: Path) -> str:
    """The first line of ``path``, stripped (a trailing newline is not part of the secret)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror or exc}", param_hint="--secret-file") from exc
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise typer.BadParameter(f"{path} is empty", param_hint="--secret-file")
    return secret
