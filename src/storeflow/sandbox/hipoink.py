"""Simulator of the Hipoink ESL API (V1.0.0), with the real API's validation and reply shapes.

- ``POST /api/{client_id}/product/create``: one product, fields at the top level of the body
- ``POST /api/{client_id}/product/create_multiple``: products in ``f1``
- ``POST /api/{client_id}/product/del_multiple``: product codes in ``f1``

Every body carries ``store_code``, ``is_base64`` and ``sign`` (a static key). Replies are HTTP 200
``{"error_code": 0, "error_msg": "", "count": N}``; a wrong sign, a missing ``pc``/``pn``/``pp`` or a
malformed body is HTTP 200 with a non-zero ``error_code`` (a batch is refused whole). Products are
kept per store; ``GET /_sandbox/products?store_code=X`` lists what each label would show, with the
time each product last arrived (``received_at``, epoch seconds) so latency can be measured.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from storeflow.sandbox.base import ClientConfig, Simulator

ERR_SIGN = 40001
ERR_PARAM = 40002
ERR_PRODUCT = 40003
ERR_CLIENT = 40004
REQUIRED = ("pc", "pn", "pp")


def sandbox_sign(seed: int) -> str:
    """The simulator's static sign (16 hex characters, like the real default)."""
    return hashlib.sha256(f"storeflow-hipoink-sign-{seed}".encode()).hexdigest()[:16]


def sandbox_webhook_secret(seed: int) -> str:
    """The sandbox's Shopify app secret (what `sandbox shopify send --secret` signs with)."""
    return "shpss_" + hashlib.sha256(f"storeflow-shopify-secret-{seed}".encode()).hexdigest()[:32]


def _reply(code: int = 0, msg: str = "", count: int = 0) -> JSONResponse:
    return JSONResponse({"error_code": code, "error_msg": msg, "count": count})


def product_problem(product: Any, where: str) -> str | None:
    """Why the real API would refuse this product, or None."""
    if not isinstance(product, dict):
        return f"{where}: product is not an object"
    for key in REQUIRED:
        value = product.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            return f"{where}: {key} is required"
    if not isinstance(product["pp"], str):
        return f"{where}: pp must be a string"
    try:
        float(product["pp"])
    except ValueError:
        return f"{where}: pp {product['pp']!r} is not a price"
    return None


class HipoinkSimulator(Simulator):
    name = "hipoink"
    description = "Hipoink ESL API: product/create, create_multiple, del_multiple"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.client_id = "default"
        self.sign = sandbox_sign(seed)
        self.stores: dict[str, dict[str, dict[str, Any]]] = {}
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.lock = threading.Lock()

    def install(self, app: FastAPI) -> None:
        @app.post("/api/{client_id}/product/{action}")
        async def product(client_id: str, action: str, request: Request) -> JSONResponse:
            return self.handle(client_id, action, await request.body())

        @app.get("/_sandbox/products")
        async def products(store_code: str | None = None) -> dict[str, Any]:
            with self.lock:
                if store_code is not None:
                    items = sorted(self.stores.get(store_code, {}).values(), key=lambda p: p["pc"])
                    return {"store_code": store_code, "count": len(items), "products": items}
                return {
                    "stores": {
                        code: sorted(items.values(), key=lambda p: p["pc"]) for code, items in self.stores.items()
                    }
                }

        @app.delete("/_sandbox/products")
        async def reset() -> dict[str, Any]:
            with self.lock:
                self.stores.clear()
                self.calls.clear()
                self.errors.clear()
            return {"ok": True}

    def handle(self, client_id: str, action: str, raw: bytes) -> JSONResponse:
        now = time.time()
        self.calls[action] += 1
        if action not in {"create", "create_multiple", "del_multiple"}:
            return JSONResponse({"error_code": 404, "error_msg": f"unknown action {action}"}, 404)
        if client_id != self.client_id:
            return self._fail(action, ERR_CLIENT, f"unknown client {client_id}")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return self._fail(action, ERR_PARAM, "body is not JSON")
        if not isinstance(body, dict):
            return self._fail(action, ERR_PARAM, "body is not an object")
        if body.get("sign") != self.sign:
            return self._fail(action, ERR_SIGN, "sign error")
        store = body.get("store_code")
        if not isinstance(store, str) or not store:
            return self._fail(action, ERR_PARAM, "store_code is required")
        if action == "del_multiple":
            codes = body.get("f1")
            if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
                return self._fail(action, ERR_PARAM, "f1 must be a list of product codes")
            with self.lock:
                held = self.stores.get(store, {})
                removed = sum(1 for code in codes if held.pop(code, None) is not None)
            return _reply(count=removed)
        if action == "create":
            fields = {k: v for k, v in body.items() if k not in {"store_code", "is_base64", "sign"}}
            batch: list[Any] = [fields]
        else:
            f1 = body.get("f1")
            if not isinstance(f1, list) or not f1:
                return self._fail(action, ERR_PARAM, "f1 must be a non-empty list of products")
            batch = f1
        for index, item in enumerate(batch):
            problem = product_problem(item, f"f1[{index}]" if action == "create_multiple" else "product")
            if problem:
                return self._fail(action, ERR_PRODUCT, problem)
        with self.lock:
            held = self.stores.setdefault(store, {})
            for item in batch:
                previous = held.get(item["pc"])
                held[item["pc"]] = {
                    **item,
                    "received_at": now,
                    "updates": (previous["updates"] + 1) if previous else 1,
                }
        return _reply(count=len(batch))

    def _fail(self, action: str, code: int, message: str) -> JSONResponse:
        self.errors[action] += 1
        return _reply(code, message)

    def state(self) -> dict[str, Any]:
        with self.lock:
            return {
                "client_id": self.client_id,
                "calls": dict(self.calls),
                "errors": dict(self.errors),
                "stores": {code: len(items) for code, items in self.stores.items()},
            }

    def truth(self, params: dict[str, str]) -> dict[str, Any]:
        store = params.get("store") or params.get("store_code")
        with self.lock:
            if store and store != "all":
                return {"store_code": store, "products": sorted(self.stores.get(store, {}))}
            return {code: sorted(items) for code, items in self.stores.items()}

    def client_config(self, base_url: str) -> ClientConfig:
        return ClientConfig(
            env={
                "HIPOINK_API_BASE_URL": base_url,
                "HIPOINK_CLIENT_ID": self.client_id,
                "HIPOINK_API_SECRET": self.sign,
                "SHOPIFY_WEBHOOK_SECRET": sandbox_webhook_secret(self.seed),
            }
        )
