"""Run the web app with uvicorn."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

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


@contextlib.contextmanager
def serve_in_thread(app: Any, label: str = "app", timeout: float = 20.0) -> Iterator[str]:
    """Serve an ASGI app (lifespan on) on a free 127.0.0.1 port in a thread; yields its base URL.

    For the demo and tests: the caller's process keeps its own signal handlers.
    """
    sock = bind_port(0, label)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"{label} did not start on 127.0.0.1:{sock.getsockname()[1]}")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
