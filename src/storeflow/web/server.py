"""Run the web app with uvicorn."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import uvicorn

from storeflow.errors import ConfigError
from storeflow.web.ports import bind_port

if TYPE_CHECKING:
    from storeflow.context import AppContext


def proxy_options(app: Any) -> dict[str, Any]:
    """uvicorn's forwarding-header options, set deliberately: X-Forwarded-For/-Proto are believed only from
    FORWARDED_ALLOW_IPS (uvicorn's own default believes 127.0.0.1, i.e. any local forwarder's clients)."""
    web_access = getattr(getattr(app, "state", None), "web_access", None)
    trusted = list(web_access.trusted_proxies) if web_access is not None else []
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or ""}


def uvicorn_config(app: Any, **options: Any) -> uvicorn.Config:
    """The one uvicorn configuration of storeflow's web app (serve, demo, tests)."""
    return uvicorn.Config(app, log_level="warning", access_log=False, **proxy_options(app), **options)


def serve_app(ctx: AppContext, host: str, port: int) -> None:
    from storeflow.web.access import admin_token, admin_token_problem
    from storeflow.web.app import create_app
    from storeflow.web.keys import LOCAL_TOKEN

    settings = ctx.settings
    token = admin_token(settings)
    problem = admin_token_problem(token, allow_empty=False)
    if problem:
        raise ConfigError(problem)
    if host not in {"127.0.0.1", "localhost", "::1"} and not token:
        raise ConfigError(
            f"refusing to bind {host} without STOREFLOW_ADMIN_TOKEN: /api and /dashboard would be open. "
            "Set STOREFLOW_ADMIN_TOKEN or bind 127.0.0.1."
        )
    settings.check_production_secrets()
    db = ctx.database()
    sock = bind_port(port, "storeflow serve") if host == "127.0.0.1" else None
    app = create_app(settings, db, bound_host=host)
    server = uvicorn.Server(uvicorn_config(app, host=host, port=port))
    shown = sock.getsockname()[1] if sock else port
    print(f"storeflow serving on http://{host}:{shown}  (dashboard: /dashboard, API docs: /docs)", flush=True)  # noqa: T201
    if not app.state.web_access.configured:
        print(  # noqa: T201
            f"no STOREFLOW_ADMIN_TOKEN or DASHBOARD_PASSWORD: /api writes need the token in "
            f"{settings.home / LOCAL_TOKEN} (see docs/security.md)",
            flush=True,
        )
    server.run(sockets=[sock] if sock else None)


@contextlib.contextmanager
def serve_in_thread(app: Any, label: str = "app", timeout: float = 20.0) -> Iterator[str]:
    """Serve an ASGI app (lifespan on) on a free 127.0.0.1 port in a thread; yields its base URL.

    For the demo and tests: the caller's process keeps its own signal handlers.
    """
    sock = bind_port(0, label)
    server = uvicorn.Server(uvicorn_config(app, lifespan="on"))
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
