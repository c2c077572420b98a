"""The ESL web API (spec 002): health, store mappings, and the Shopify webhook receivers.

A webhook is verified over its raw bytes before anything is parsed, then recorded, applied and
enqueued by one server-side call (`esl_ingest_webhook`) in one transaction; only after that commit
is it acknowledged. The router uses an async psycopg pool opened by its lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import psycopg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from psycopg_pool import AsyncConnectionPool
from starlette.types import ASGIApp, Receive, Scope, Send

from storeflow import __version__
from storeflow.db.connect import Database
from storeflow.db.pool import is_connection_lost
from storeflow.esl import store
from storeflow.esl.models import StoreMapping, StoreMappingIn, StoreMappingUpdate
from storeflow.esl.store import GET_MAPPING, INSERT_MAPPING, LIST_MAPPINGS, update_mapping_query
from storeflow.esl.transform import (
    TOPICS,
    Prepared,
    prepare_delivery,
    refused_delivery,
    shop_domain,
    verify_hmac,
)
from storeflow.logs import get_logger

if TYPE_CHECKING:
    from storeflow.settings import Settings

log = get_logger("esl")
MAX_BODY_BYTES = 1024 * 1024


class Ingester:
    """Runs `esl_ingest_webhook` for concurrent deliveries in shared transactions (group commit).

    Each delivery still gets its own inbox row and queue items and is acknowledged only after the
    transaction holding them commits; deliveries that arrive together share one statement, one
    commit and one round trip, which is what lets the receiver keep up with bursts. A batch that
    fails (two batches racing on the same delivery, say) is retried one delivery per transaction, unless
    the database itself is gone: then every delivery of the batch fails at once (503).
    """

    def __init__(self, pool: AsyncConnectionPool, max_batch: int = 64, lanes: int = 3) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self.lanes = lanes
        self.queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []

    async def ingest(self, delivery: dict[str, Any]) -> dict[str, Any]:
        """``delivery``: {meta, raw (base64), kind, doc}; returns {inbox_id, outcome, reason, enqueued}."""
        if not self.tasks:
            self.tasks = [asyncio.ensure_future(self._lane()) for _ in range(self.lanes)]
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((delivery, future))
        return await future

    async def _lane(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.max_batch and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            try:
                rows = await self._run([d for d, _ in batch])
            except Exception as exc:
                if len(batch) == 1 or is_connection_lost(exc):
                    # the database is gone: one at a time would only fail again, later (Shopify waits 5 s)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for item in batch:
                        await self._run_one(item)
                continue
            if len(rows) != len(batch):
                for _, future in batch:
                    if not future.done():
                        future.set_exception(RuntimeError("ingest returned no row"))
                continue
            for (_, future), row in zip(batch, rows, strict=True):
                if not future.done():
                    future.set_result(row)

    async def _run(self, deliveries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            return await store.ingest_deliveries_async(conn, deliveries)

    async def _run_one(self, item: tuple[dict[str, Any], asyncio.Future[dict[str, Any]]]) -> None:
        delivery, future = item
        try:
            rows = await self._run([delivery])
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(rows[0])

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class EveryFewSeconds:
    """One log line per ``seconds`` for a repeated failure (a database outage would write one per webhook)."""

    def __init__(self, seconds: float = 5.0) -> None:
        self.seconds = seconds
        self._last = -float("inf")
        self._suppressed = 0

    def take(self, now: float | None = None) -> int | None:
        """The number of lines skipped since the last one when a line may be written now, else None."""
        now = time.monotonic() if now is None else now
        if now - self._last < self.seconds:
            self._suppressed += 1
            return None
        self._last, skipped, self._suppressed = now, self._suppressed, 0
        return skipped


_not_stored_log = EveryFewSeconds()


class Notifier:
    """Wakes the workers (NOTIFY esl_sync) after commits, coalescing a burst into a few notifications.

    Kept out of the ingest transaction on purpose: PostgreSQL serialises the commits of notifying
    transactions, which would cap webhook throughput at one fsync per request. A notification lost
    to a crash right after a commit costs at most one worker poll interval.
    """

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool
        self.pending = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        self.pending.set()
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while self.pending.is_set():
            self.pending.clear()
            try:
                async with self.pool.connection() as conn:
                    await store.notify_workers_async(conn)
            except Exception as exc:
                log.warning("could not notify the workers (%s); they will poll", exc, event="notify")
                return

    async def close(self) -> None:
        if self.task is not None:
            with contextlib.suppress(Exception):
                await self.task


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    pool = _open_pool(app.state.db)
    await pool.open(wait=False)
    app.state.esl_pool = pool
    app.state.esl_notifier = Notifier(pool)
    app.state.esl_ingester = Ingester(pool)
    try:
        yield
    finally:
        await app.state.esl_ingester.close()
        await app.state.esl_notifier.close()
        await pool.close()
        app.state.esl_pool = None


def _open_pool(db: Database) -> AsyncConnectionPool:
    # storeflow.db.pool sets the timeouts: during an outage a webhook gets its 503 within
    # DB_POOL_TIMEOUT_SECONDS (then at once), and a restarted server is used again within seconds
    return db.async_pool("esl-web", min_size=2, max_size=12, autocommit=True)


async def get_pool(request: Request) -> AsyncConnectionPool:
    return await _ensure_pool(request.app.state)


async def _ensure_pool(state: Any) -> AsyncConnectionPool:
    pool: AsyncConnectionPool | None = getattr(state, "esl_pool", None)
    if pool is None:
        # an app run without its lifespan (some test clients): open the pool on first use
        pool = _open_pool(state.db)
        await pool.open(wait=False)
        state.esl_pool = pool
        state.esl_notifier = Notifier(pool)
        state.esl_ingester = Ingester(pool)
    return pool


def require_admin(request: Request) -> None:
    """Every /api call: ``Authorization: Bearer <STOREFLOW_ADMIN_TOKEN>``; without that setting, writes need the
    local token and reads a direct caller of a loopback-bound app (storeflow.web.access)."""
    throttle, client = request.app.state.login_throttle, request.client.host if request.client else "?"
    if "authorization" in request.headers and throttle.blocked(client):  # even a right token, once locked out
        raise HTTPException(
            429, "too many failed credentials from this address", headers={"Retry-After": str(int(throttle.window))}
        )
    refusal = request.app.state.web_access.api_refusal(request.method, request.headers)
    if refusal is None:
        return
    if refusal.counts_as_failure:
        throttle.failed(client)
    headers = {"WWW-Authenticate": "Bearer"} if refusal.status == 401 else None
    raise HTTPException(refusal.status, refusal.detail, headers=headers)


router = APIRouter(lifespan=lifespan)
admin = APIRouter(prefix="/api/store-mappings", tags=["store mappings"], dependencies=[Depends(require_admin)])


# ---------------------------------------------------------------- health


# operation_id: core's create_app may add a fallback /health of its own (FastAPI's lazily included
# routers hide ours from its check); distinct ids keep the OpenAPI document valid, and ours is matched first
@router.get("/health", tags=["health"], operation_id="esl_health")
async def health(request: Request) -> JSONResponse:
    """Service health: the database answers."""
    try:
        pool = await get_pool(request)
        async with pool.connection() as conn:  # the pool's own short wait (DB_POOL_TIMEOUT_SECONDS)
            await conn.execute(store.PING)
    except Exception as exc:
        return JSONResponse({"status": "degraded", "database": f"unreachable: {type(exc).__name__}"}, 503)
    return JSONResponse({"status": "ok", "version": __version__, "database": "ok"})


@router.get("/", tags=["health"], operation_id="esl_root")
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


TOO_LARGE = (413, {"ok": False, "error": f"body larger than {MAX_BODY_BYTES} bytes"})


@dataclass(frozen=True)
class WebhookSecrets:
    """Which secret verifies a delivery: the shop's own (``[[esl.shops]] webhook_secret_env``), else
    SHOPIFY_WEBHOOK_SECRET. A shop with its own secret never falls back, so a body signed for one
    shop does not verify when replayed under another shop's name."""

    default: str = field(repr=False)
    per_shop: dict[str, tuple[str, str]] = field(repr=False)  # shop -> (env var name, its value; "" when unset)

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSecrets:
        default = settings.SHOPIFY_WEBHOOK_SECRET.get_secret_value() if settings.SHOPIFY_WEBHOOK_SECRET else ""
        per_shop = {
            s.shop: (s.webhook_secret_env, settings.env_value(s.webhook_secret_env) or "")
            for s in settings.config.esl.shops
            if s.webhook_secret_env
        }
        return cls(default, per_shop)

    def for_shop(self, shop: str) -> tuple[str, str]:
        """(secret, the setting it comes from); the secret is "" when that setting is empty."""
        if shop in self.per_shop:
            name, value = self.per_shop[shop]
            return value, name
        return self.default, "SHOPIFY_WEBHOOK_SECRET"


def _secrets(state: Any) -> WebhookSecrets:
    secrets: WebhookSecrets | None = getattr(state, "esl_secrets", None)
    if secrets is None:
        secrets = state.esl_secrets = WebhookSecrets.from_settings(state.settings)
    return secrets


async def handle_webhook(
    state: Any, headers: Mapping[str, str], body: bytes, path_topic: str | None
) -> tuple[int, dict[str, Any]]:
    """One delivery: verify, parse, record and enqueue; returns (status, JSON body).

    ``state`` is the app's state (settings, pool, ingester, notifier); ``headers`` have lower-case names.
    """
    shop = shop_domain(headers)
    secret, setting = _secrets(state).for_shop(shop)
    if not secret:
        log.error("%s is not set: refusing webhooks for %r", setting, shop, event="webhook")
        return 401, {"ok": False, "error": "webhook secret not configured"}
    if not verify_hmac(secret, body, headers.get("x-shopify-hmac-sha256")):
        log.warning(
            "webhook refused: %s HMAC from %r",
            "missing" if not headers.get("x-shopify-hmac-sha256") else "wrong",
            shop,
            event="hmac",
        )
        return 401, {"ok": False, "error": "invalid HMAC"}

    prepared = prepare_delivery(headers, body, path_topic, datetime.now(UTC))
    started = time.perf_counter()
    try:
        row = await _ingest(state, prepared)
    except Exception as exc:
        # not committed: answer 503 so Shopify delivers it again
        if (suppressed := _not_stored_log.take()) is not None:
            more = f" ({suppressed} more not stored since the last such line)" if suppressed else ""
            log.error("webhook %s from %r not stored: %s%s", prepared.topic, shop, exc, more, event="webhook")
        return 503, {"ok": False, "error": "temporarily unavailable"}
    if row["enqueued"]:
        state.esl_notifier.poke()
    if log.logger.isEnabledFor(logging.DEBUG):
        log.debug(
            "webhook %s %r: %s (%s) in %.1fms",
            prepared.topic,
            shop,
            row["outcome"],
            row["reason"] or "",
            (time.perf_counter() - started) * 1000,
            event="webhook",
        )
    return 200, {
        "ok": True,
        "inbox_id": row["inbox_id"],
        "outcome": row["outcome"],
        "reason": row["reason"],
        "enqueued": row["enqueued"],
    }


async def _ingest(state: Any, prepared: Prepared) -> dict[str, Any]:
    """Store a delivery. Should the database refuse its values although `prepare_delivery` passed
    them (a class of value nobody has met yet), it is stored as invalid with PostgreSQL's reason:
    retrying could never succeed, and Shopify drops a delivery after 8 failed attempts."""
    await _ensure_pool(state)
    try:
        return cast("dict[str, Any]", await state.esl_ingester.ingest(prepared.delivery))
    except (psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.error(
            "webhook %s from %r refused by the database: %s", prepared.topic, prepared.shop, first, event="webhook"
        )
        reason = f"the database refused the delivery ({exc.sqlstate}): {first}"
        return cast("dict[str, Any]", await state.esl_ingester.ingest(refused_delivery(prepared, reason)))


async def receive_webhook(request: Request, path_topic: str | None) -> JSONResponse:
    """The FastAPI route's way in (the app's WebhookFastPath normally answers these paths first)."""
    try:
        body = await read_body(request.headers, request.receive)
    except ClientGone:  # nobody is left to read an answer
        return JSONResponse({"ok": False, "error": "client disconnected"}, 400)
    if body is None:
        status, payload = TOO_LARGE
    else:
        status, payload = await handle_webhook(request.app.state, request.headers, body, path_topic)
    return JSONResponse(payload, status)


# path -> the topic it implies (the X-Shopify-Topic header wins); None: the header says
WEBHOOK_PATHS: dict[str, str | None] = {**{f"/webhooks/shopify/{t}": t for t in TOPICS}, "/webhooks/shopify": None}


class WebhookFastPath:
    """Pure-ASGI handling of the webhook POSTs, in front of FastAPI's routing.

    Shopify's deliveries are the one hot path of the service: they skip route matching, request
    objects, dependency resolution and response classes and go straight to `handle_webhook`, the
    same code the documented FastAPI routes below call. Everything else passes through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or scope["method"] != "POST" or path not in WEBHOOK_PATHS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await read_body(headers, receive)
        except ClientGone:  # the sender hung up mid-body: nothing to verify, store or answer
            return
        if body is None:
            status, payload = TOO_LARGE
        else:
            status, payload = await handle_webhook(scope["app"].state, headers, body, WEBHOOK_PATHS[path])
        data = json.dumps(payload, separators=(",", ":")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": data})


class ClientGone(Exception):
    pass


async def read_body(headers: Mapping[str, str], receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The request body, or None when it is (or declares itself) larger than ``limit``; ClientGone when
    the client disconnects before the body is complete."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


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
