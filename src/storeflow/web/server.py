"""Run the web app with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess

from storeflow.errors import ConfigError, UnavailableError
from storeflow.logs import get_logger
from storeflow.web.ports import bind_port

if TYPE_CHECKING:
    from storeflow.context import AppContext

log = get_logger("web")


def proxy_options(app: Any) -> dict[str, Any]:
    """uvicorn's forwarding-header options, set deliberately: X-Forwarded-For/-Proto are believed only from
    FORWARDED_ALLOW_IPS (uvicorn's own default believes 127.0.0.1, i.e. any local forwarder's clients)."""
    web_access = getattr(getattr(app, "state", None), "web_access", None)
    trusted = list(web_access.trusted_proxies) if web_access is not None else []
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or ""}


def uvicorn_config(app: Any, factory_app: Callable[[], Any] | None = None, **options: Any) -> uvicorn.Config:
    """The one uvicorn configuration of storeflow's web app (serve, demo, tests).

    ``factory_app``: build the app in each worker process instead (``app`` then only gives the
    forwarding options); it must pickle, as uvicorn starts its workers with ``spawn``.
    """
    target: Any = app if factory_app is None else factory_app
    return uvicorn.Config(
        target,
        factory=factory_app is not None,
        log_level="warning",
        access_log=False,
        **proxy_options(app),
        **options,
    )


def serve_app(ctx: AppContext, host: str, port: int, workers: int = 1) -> None:
    """`storeflow serve`: one uvicorn server in this process, or ``workers`` processes on one socket.

    The "serving on" line is printed once the server(s) answer: after uvicorn's signal handlers are
    in place, so a SIGINT/SIGTERM that follows it is never swallowed.
    """
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
    warning = (
        f"no STOREFLOW_ADMIN_TOKEN or DASHBOARD_PASSWORD: /api writes need the token in "
        f"{settings.home / LOCAL_TOKEN} (see docs/security.md)"
        if not app.state.web_access.configured
        else None
    )

    def announce(shown: int, detail: str = "") -> None:
        print(  # noqa: T201
            f"storeflow serving on http://{host}:{shown}{detail}  (dashboard: /dashboard, API docs: /docs)",
            flush=True,
        )
        if warning:
            print(warning, flush=True)  # noqa: T201

    if workers <= 1:
        config = uvicorn_config(app, host=host, port=port, timeout_graceful_shutdown=GRACEFUL_SECONDS)
        server = AnnouncingServer(config, lambda: announce(sock.getsockname()[1] if sock else port))
        server.run(sockets=[sock] if sock else None)
        return
    factory = functools.partial(worker_app, ctx.config_path, ctx.log_level, host, db.url, db.kind, os.getpid())
    config = uvicorn_config(
        app,
        factory_app=factory,
        host=host,
        port=port,
        workers=workers,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        timeout_worker_healthcheck=WORKER_START_SECONDS,
    )
    sock = sock or config.bind_socket()
    db.close()  # the parent serves nothing: each worker opens its own pools
    supervisor = Supervisor(config, [sock], lambda n: announce(sock.getsockname()[1], f" ({n} worker processes)"))
    supervisor.run()
    if not supervisor.ready:
        raise UnavailableError(f"the {workers} server processes did not all start (see {settings.LOG_DIRECTORY})")


# how long a stopping or reloaded server lets requests in flight finish before cancelling them
GRACEFUL_SECONDS = 30
# how long a new worker process may take to answer (spawn, imports, lifespan) before a reload gives up
WORKER_START_SECONDS = 60


# a worker a reload replaces stops accepting, then waits this long before closing idle connections:
# one it accepted just before has its request on the way, and closing it unread would reset it
LISTEN_DRAIN_SECONDS = 1.0


class AnnouncingServer(uvicorn.Server):
    """A uvicorn server that calls ``on_started`` once it accepts connections (its signal handlers are set)."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_started()


def _stop_with_parent(supervisor: int | None) -> None:
    """Linux: a worker gets SIGTERM when its supervisor dies (even by SIGKILL) instead of living on alone."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if supervisor is not None and os.getppid() != supervisor:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _drain_on_sigterm() -> None:
    """In a `--workers` process (uvicorn runs its own Server there): SIGTERM, which the supervisor sends
    to the worker a reload replaces, first stops accepting, then after LISTEN_DRAIN_SECONDS stops the
    server as uvicorn would (the other workers take the new connections meanwhile)."""
    handler = signal.getsignal(signal.SIGTERM)
    server = getattr(handler, "__self__", None)
    if not isinstance(server, uvicorn.Server):
        return  # not called from inside uvicorn's signal capture
    loop = asyncio.get_running_loop()

    def stop_accepting() -> None:
        for listener in getattr(server, "servers", []):
            listener.close()
        loop.call_later(LISTEN_DRAIN_SECONDS, server.handle_exit, signal.SIGTERM, None)

    def on_sigterm(signum: int, frame: Any) -> None:
        if server.should_exit:
            server.handle_exit(signum, frame)
        else:
            loop.call_soon_threadsafe(stop_accepting)

    signal.signal(signal.SIGTERM, on_sigterm)


class Supervisor(Multiprocess):
    """uvicorn's process manager: N workers on one socket; SIGHUP replaces them one at a time, each
    replacement serving before the worker it replaces stops (which finishes its requests in flight);
    SIGINT/SIGTERM stop them all gracefully."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], on_ready: Callable[[int], None]) -> None:
        super().__init__(config, sockets)
        self.on_ready = on_ready
        self.ready = False

    def init_processes(self) -> None:
        super().init_processes()
        for process in self.processes:
            if not process.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                if not self.should_exit.is_set():
                    log.error("worker process %s did not start; stopping", process.pid, event="serve")
                    self.should_exit.set()
                return
        self.ready = True
        self.on_ready(len(self.processes))

    def handle_hup(self) -> None:
        before = [p.pid for p in self.processes]
        super().handle_hup()
        after = [p.pid for p in self.processes]
        replaced = sum(1 for pid in after if pid not in before)
        log.info("SIGHUP: replaced %d of %d worker processes (%s -> %s)", replaced, len(after), before, after)
        print(f"storeflow reloaded {replaced} of {len(after)} worker processes", flush=True)  # noqa: T201


def worker_app(
    config_path: Path | None,
    log_level: str | None,
    host: str,
    db_url: str,
    db_kind: str,
    supervisor_pid: int | None = None,
) -> Any:
    """The app of one `storeflow serve --workers N` process (uvicorn calls it in the new process)."""
    from storeflow.context import AppContext
    from storeflow.db.connect import Database
    from storeflow.db.pool import PoolConfig
    from storeflow.web.app import create_app

    # a SIGHUP for the supervisor that reaches the whole process group must not end a worker mid-request
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    _drain_on_sigterm()
    _stop_with_parent(supervisor_pid)
    settings = AppContext(config_path=config_path, log_level=log_level).settings
    db = Database(
        url=db_url,
        kind=db_kind,
        timeout=settings.REQUEST_TIMEOUT_SECONDS,
        pool_config=PoolConfig.from_settings(settings),
    )
    return create_app(settings, db, bound_host=host)


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
