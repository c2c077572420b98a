"""Run the web app with uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING

import uvicorn

from storeflow.errors import ConfigError
from storeflow.sandbox.host import bind_port

if TYPE_CHECKING:
    from storeflow.context import AppContext


def serve_app(ctx: AppContext, host: str, port: int) -> None:
    from storeflow.web.app import create_app

    settings = ctx.settings
    if host not in {"127.0.0.1", "localhost", "::1"} and settings.STOREFLOW_ADMIN_TOKEN is None:
        raise ConfigError(
            f"refusing to bind {host} without STOREFLOW_ADMIN_TOKEN: /api and /dashboard would be open. "
            "Set STOREFLOW_ADMIN_TOKEN or bind 127.0.0.1."
        )
    settings.check_production_secrets()
    db = ctx.database()
    sock = bind_port(port, "storeflow serve") if host == "127.0.0.1" else None
    app = create_app(settings, db, bound_host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    print(f"storeflow serving on http://{host}:{port}  (dashboard: /dashboard, API docs: /docs)")  # noqa: T201
    server.run(sockets=[sock] if sock else None)
