"""The ESL web API (spec 002): health, store mappings, and the Shopify webhook receivers.

A webhook is verified over its raw bytes before anything is parsed, then recorded, applied and
enqueued by one server-side call (`esl_ingest_webhook`) in one transaction; only after that commit
is it acknowledged. The router uses an async psycopg pool opened by its lifespan.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from storeflow import __version__
from storeflow.esl.models import (
    GET_MAPPING,
    INSERT_MAPPING,
    LIST_MAPPINGS,
    StoreMapping,
    StoreMappingIn,
    StoreMappingUpdate,
    update_mapping_query,
)
from storeflow.esl.transform import TOPICS, parse_timestamp, parse_webhook, verify_hmac
from storeflow.logs import get_logger

log = get_logger("esl")
MAX_BODY_BYTES = 1024 * 1024
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
INGEST = "SELECT inbox_id, outcome, reason, enqueued FROM esl_ingest_webhook(%s, %s, %s, %s)"
# headers kept in the inbox (everything Shopify sends that helps an operator; never cookies or auth)
_DROP_HEADERS = {"authorization", "cookie", "proxy-authorization"}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    pool = _open_pool(app)
    await pool.open(wait=False)
    app.state.esl_pool = pool
    try:
        yield
    finally:
        await pool.close()
        app.state.esl_pool = None


def _open_pool(app: FastAPI) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        app.state.db.url,
        min_size=2,
        max_size=12,
        kwargs={"autocommit": True, "row_factory": dict_row},
        open=False,
        timeout=10,
        name="esl-web",
    )


async def get_pool(request: Request) -> AsyncConnectionPool:
    pool: AsyncConnectionPool | None = getattr(request.app.state, "esl_pool", None)
    if pool is None:
        # an app run without its lifespan (some test clients): open the pool on first use
        pool = _open_pool(request.app)
        await pool.open()
        request.app.state.esl_pool = pool
    return pool


def require_admin(request: Request) -> None:
    """``Authorization: Bearer <STOREFLOW_ADMIN_TOKEN>``; without a token, only a loopback-bound app."""
    token = request.app.state.settings.STOREFLOW_ADMIN_TOKEN
    secret = token.get_secret_value() if token is not None else ""
    if not secret:
        if getattr(request.app.state, "bound_host", "127.0.0.1") in LOOPBACK:
            return
        raise HTTPException(403, "STOREFLOW_ADMIN_TOKEN is not set: /api is served only on 127.0.0.1")
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {secret}".encode()):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


router = APIRouter(lifespan=lifespan)
admin = APIRouter(prefix="/api/store-mappings", tags=["store mappings"], dependencies=[Depends(require_admin)])


# ---------------------------------------------------------------- health


@router.get("/health", tags=["health"])
async def health(request: Request) -> JSONResponse:
    """Service health: the database answers."""
    try:
        pool = await get_pool(request)
        async with pool.connection(timeout=3) as conn:
            await conn.execute("SELECT 1")
    except Exception as exc:
        return JSONResponse({"status": "degraded", "database": f"unreachable: {type(exc).__name__}"}, 503)
    return JSONResponse({"status": "ok", "version": __version__, "database": "ok"})


@router.get("/", tags=["health"])
async def root() -> dict[str, Any]:
    return {
        "service": "storeflow",
        "version": __version__,
        "docs": "/docs",
        "webhooks": [f"/webhooks/shopify/{t}" for t in TOPICS],
    }


# ---------------------------------------------------------------- store mappings


@admin.post("/", status_code=201, response_model=StoreMapping)
async def create_store_mapping(body: StoreMappingIn, pool: AsyncConnectionPool = Depends(get_pool)) -> Any:
    async with pool.connection() as conn:
        row = await (await conn.execute(INSERT_MAPPING, body.model_dump())).fetchone()
    if row is None:
        raise HTTPException(409, f"a mapping for {body.source_system} store {body.source_store_id} exists")
    log.info("store mapping %s -> %s created", body.source_store_id, body.hipoink_store_code, event="mapping")
    return row


@admin.get("/", response_model=list[StoreMapping])
async def list_store_mappings(pool: AsyncConnectionPool = Depends(get_pool)) -> Any:
    async with pool.connection() as conn:
        return await (await conn.execute(LIST_MAPPINGS)).fetchall()


@admin.get("/{mapping_id}", response_model=StoreMapping)
async def get_store_mapping(mapping_id: int, pool: AsyncConnectionPool = Depends(get_pool)) -> Any:
    async with pool.connection() as conn:
        row = await (await conn.execute(GET_MAPPING, (mapping_id,))).fetchone()
    if row is None:
        raise HTTPException(404, f"no store mapping {mapping_id}")
    return row


@admin.put("/{mapping_id}", response_model=StoreMapping)
async def update_store_mapping(
    mapping_id: int, body: StoreMappingUpdate, pool: AsyncConnectionPool = Depends(get_pool)
) -> Any:
    changes = body.changes()
    async with pool.connection() as conn:
        try:
            if changes:
                cur = await conn.execute(update_mapping_query(changes), {**changes, "id": mapping_id})
            else:
                cur = await conn.execute(GET_MAPPING, (mapping_id,))
            row = await cur.fetchone()
        except psycopg.errors.UniqueViolation as exc:
            raise HTTPException(409, "another mapping has that source store") from exc
        except psycopg.errors.IntegrityError as exc:
            raise HTTPException(422, str(exc).splitlines()[0]) from exc
    if row is None:
        raise HTTPException(404, f"no store mapping {mapping_id}")
    return row


@admin.delete("/{mapping_id}", response_model=StoreMapping)
async def deactivate_store_mapping(mapping_id: int, pool: AsyncConnectionPool = Depends(get_pool)) -> Any:
    """Deactivate (webhooks for the shop are then recorded as ignored); rows are kept for the audit trail."""
    async with pool.connection() as conn:
        cur = await conn.execute(update_mapping_query({"is_active": False}), {"is_active": False, "id": mapping_id})
        row = await cur.fetchone()
    if row is None:
        raise HTTPException(404, f"no store mapping {mapping_id}")
    return row


router.include_router(admin)


# ---------------------------------------------------------------- webhooks


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The raw body, refusing more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def receive_webhook(request: Request, path_topic: str | None) -> JSONResponse:
    try:
        body = await read_body(request)
    except BodyTooLarge:
        return JSONResponse({"ok": False, "error": f"body larger than {MAX_BODY_BYTES} bytes"}, 413)
    settings = request.app.state.settings
    secret = settings.SHOPIFY_WEBHOOK_SECRET.get_secret_value() if settings.SHOPIFY_WEBHOOK_SECRET else ""
    headers = request.headers
    if not secret:
        log.error("SHOPIFY_WEBHOOK_SECRET is not set: refusing webhooks", event="webhook")
        return JSONResponse({"ok": False, "error": "webhook secret not configured"}, 401)
    if not verify_hmac(secret, body, headers.get("x-shopify-hmac-sha256")):
        log.warning(
            "webhook refused: %s HMAC from %s",
            "missing" if not headers.get("x-shopify-hmac-sha256") else "wrong",
            headers.get("x-shopify-shop-domain", "?"),
            event="hmac",
        )
        return JSONResponse({"ok": False, "error": "invalid HMAC"}, 401)

    header_topic = (headers.get("x-shopify-topic") or "").strip().lower()
    topic = header_topic or path_topic or ""
    triggered_at = _header_time(headers.get("x-shopify-triggered-at"))
    parsed = parse_webhook(topic, body, fallback_updated_at=triggered_at or datetime.now(UTC))
    shop = (headers.get("x-shopify-shop-domain") or "").strip().lower()
    meta = {
        "shop": shop,
        "topic": topic,
        "event_id": headers.get("x-shopify-event-id"),
        "webhook_id": headers.get("x-shopify-webhook-id"),
        "triggered_at": triggered_at.isoformat() if triggered_at else None,
        "api_version": headers.get("x-shopify-api-version"),
        "headers": {k: v for k, v in headers.items() if k.lower() not in _DROP_HEADERS},
    }
    started = time.perf_counter()
    try:
        pool = await get_pool(request)
        async with pool.connection() as conn:
            cur = await conn.execute(INGEST, (Jsonb(meta), body, parsed.kind, Jsonb(parsed.doc)))
            row = cast("dict[str, Any] | None", await cur.fetchone())
    except Exception as exc:
        # not committed: answer 503 so Shopify delivers it again
        log.error("webhook %s from %s not stored: %s", topic, shop, exc, event="webhook")
        return JSONResponse({"ok": False, "error": "temporarily unavailable"}, 503)
    assert row is not None
    log.debug(
        "webhook %s %s: %s (%s) in %.1fms",
        topic,
        shop,
        row["outcome"],
        row["reason"] or "",
        (time.perf_counter() - started) * 1000,
        event="webhook",
    )
    return JSONResponse(
        {
            "ok": True,
            "inbox_id": row["inbox_id"],
            "outcome": row["outcome"],
            "reason": row["reason"],
            "enqueued": row["enqueued"],
        }
    )


def _header_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parse_timestamp(value, "X-Shopify-Triggered-At")
    except ValueError:
        return None


@router.post("/webhooks/shopify/products/create", tags=["webhooks"])
async def products_create(request: Request) -> JSONResponse:
    """Shopify ``products/create`` (the X-Shopify-Topic header wins when it names another topic)."""
    return await receive_webhook(request, "products/create")


@router.post("/webhooks/shopify/products/update", tags=["webhooks"])
async def products_update(request: Request) -> JSONResponse:
    """Shopify ``products/update``."""
    return await receive_webhook(request, "products/update")


@router.post("/webhooks/shopify/products/delete", tags=["webhooks"])
async def products_delete(request: Request) -> JSONResponse:
    """Shopify ``products/delete`` (body ``{"id": ...}``): every variant leaves the labels."""
    return await receive_webhook(request, "products/delete")


@router.post("/webhooks/shopify/inventory_levels/update", tags=["webhooks"])
async def inventory_levels_update(request: Request) -> JSONResponse:
    """Shopify ``inventory_levels/update``."""
    return await receive_webhook(request, "inventory_levels/update")


@router.post("/webhooks/shopify", tags=["webhooks"])
async def any_topic(request: Request) -> JSONResponse:
    """One URL for every topic: the X-Shopify-Topic header says which."""
    return await receive_webhook(request, None)
