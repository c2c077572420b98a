"""The ASGI app served by `storeflow serve` (and `storeflow esl serve`).

`create_app` includes the ESL API and dashboard routers; each reads ``request.app.state.settings``
and ``request.app.state.db``. The ESL webhook fast path is a pure-ASGI handler in front of the
routers (the Shopify webhook POSTs skip routing). `RequestGuard` sits in front of all of them: the
Host check and the /api Content-Type check cover every path, the fast path included.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from storeflow import __version__
from storeflow.dashboard.routes import router as dashboard_router
from storeflow.esl.api import WebhookFastPath
from storeflow.esl.api import router as esl_router
from storeflow.logs import get_logger
from storeflow.web import access, keys

if TYPE_CHECKING:
    from storeflow.db.connect import Database
    from storeflow.settings import Settings

log = get_logger("web")


class RequestGuard:
    """Pure-ASGI checks before anything else answers: Host (DNS rebinding) and JSON-only /api writes."""

    def __init__(self, app: ASGIApp, web_access: access.WebAccess) -> None:
        self.app = app
        self.access = web_access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"}:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not access.host_allowed(headers.get("host"), self.access.allowed_hosts):
            log.warning("refused a request for host %r (not in STOREFLOW_ALLOWED_HOSTS)", headers.get("host"))
            await _reply(send, 400, "host not allowed: add it to STOREFLOW_ALLOWED_HOSTS")
            return
        method = scope.get("method", "")
        if access.needs_json(method, scope.get("path", ""), headers) and not access.is_json(
            headers.get("content-type")
        ):
            await _reply(send, 415, "/api writes take Content-Type: application/json")
            return
        await self.app(scope, receive, send)


async def _reply(send: Send, status: int, detail: str) -> None:
    data = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


def create_app(settings: Settings, db: Database, bound_host: str = "127.0.0.1") -> FastAPI:
    """The app; refuses (ConfigError) a short STOREFLOW_ADMIN_TOKEN or a bad FORWARDED_ALLOW_IPS."""
    web_access = access.WebAccess.from_settings(settings, bound_host, keys.local_api_token(settings.home))
    # /docs and /openapi.json are served by the dashboard router to authenticated callers, without a CDN
    app = FastAPI(title="storeflow", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    app.state.db = db
    app.state.bound_host = bound_host
    app.state.web_access = web_access
    app.state.login_throttle = access.LoginThrottle()
    app.include_router(esl_router)
    app.include_router(dashboard_router)
    app.add_middleware(WebhookFastPath)
    app.add_middleware(RequestGuard, web_access=web_access)  # added last: outermost

    # routes of included routers are listed on the app with their full paths
    if "/health" not in {getattr(route, "path", None) for route in app.router.routes}:

        @app.get("/health")
        def health() -> dict[str, Any]:
            return {"status": "ok", "version": __version__}

    return app
