"""The ASGI app served by `storeflow serve` (and `storeflow esl serve`).

Pipelines contribute routers listed in `ROUTERS` ("module:attribute"); each
router reads ``request.app.state.settings`` and ``request.app.state.db``.
`MIDDLEWARE` lists pure-ASGI handlers put in front of the routers for hot paths
(the Shopify webhook POSTs).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from storeflow import __version__

if TYPE_CHECKING:
    from storeflow.db.connect import Database
    from storeflow.settings import Settings

ROUTERS: list[str] = [
    "storeflow.esl.api:router",
    "storeflow.dashboard.routes:router",
]
# pure-ASGI middleware ("module:attribute") in front of the routers: hot paths that skip routing
MIDDLEWARE: list[str] = [
    "storeflow.esl.api:WebhookFastPath",
]


def _load(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    return getattr(module, attr, None)


def create_app(settings: Settings, db: Database, bound_host: str = "127.0.0.1") -> FastAPI:
    app = FastAPI(title="storeflow", version=__version__, docs_url="/docs")
    app.state.settings = settings
    app.state.db = db
    app.state.bound_host = bound_host
    for spec in ROUTERS:
        router = _load(spec)
        if router is not None:
            app.include_router(router)
    for spec in MIDDLEWARE:
        middleware = _load(spec)
        if middleware is not None:
            app.add_middleware(middleware)

    # routes of included routers are listed on the app with their full paths
    if "/health" not in {getattr(route, "path", None) for route in app.router.routes}:

        @app.get("/health")
        def health() -> dict[str, Any]:
            return {"status": "ok", "version": __version__}

    return app
