"""Runs simulators in one process on 127.0.0.1 (or a given address), each on its own port.

Used by ``storeflow sandbox up`` (foreground, until SIGINT/SIGTERM), by
``storeflow demo`` and by the tests (`SandboxHost.start_in_thread`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn

from storeflow.errors import UnavailableError
from storeflow.files import write_private_text
from storeflow.logs import get_logger
from storeflow.sandbox.base import ClientConfig, Simulator, create_app
from storeflow.sandbox.registry import SIMULATORS
from storeflow.web import ports as web_ports

log = get_logger("sandbox")
HOST = "127.0.0.1"
CRM_SIMULATORS = ("tumbledry", "uclean")  # they take `stores` and `report_delay`


def bind_port(port: int, name: str, host: str = HOST) -> socket.socket:
    """A listening socket for simulator ``name`` (port 0 = any free port), or a clear error."""
    return web_ports.bind_port(port, f"simulator {name}", host, hint="Stop what uses it or pick another --port-base.")


@dataclass
class RunningSim:
    sim: Simulator
    sock: socket.socket
    server: uvicorn.Server | None = None
    public_host: str = HOST

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://{self.public_host}:{self.port}"


@dataclass
class SandboxHost:
    """A set of simulators bound to loopback ports."""

    names: list[str]
    port_base: int = 18000
    seed: int = 0
    # a container binds 0.0.0.0 and hands its clients the name they reach it by (compose: the service name)
    host: str = HOST
    public_host: str | None = None
    # the CRM simulators' store count (None: the spec's two each) and report-generation seconds (None: theirs)
    crm_stores: int | None = None
    report_delay: float | None = None
    sims: dict[str, RunningSim] = field(default_factory=dict)
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _error: BaseException | None = None

    def __post_init__(self) -> None:
        unknown = [n for n in self.names if n not in SIMULATORS]
        if unknown:
            raise UnavailableError(f"unknown simulator(s): {', '.join(unknown)}; known: {', '.join(SIMULATORS)}")

    def bind(self) -> None:
        """Bind every port first, so a port in use fails before anything starts."""
        try:
            for index, name in enumerate(self.names):
                port = self.port_base + index if self.port_base else 0
                sock = bind_port(port, name, self.host)
                sim = SIMULATORS[name](seed=self.seed, **self._options(name))
                self.sims[name] = RunningSim(sim, sock, public_host=self.public_host or self.host)
                sim.base_url = self.sims[name].url
        except BaseException:
            for running in self.sims.values():
                running.sock.close()
            self.sims.clear()
            raise

    def _options(self, name: str) -> dict[str, Any]:
        if name not in CRM_SIMULATORS:
            return {}
        return {"stores": self.crm_stores, "report_delay": self.report_delay}

    @property
    def urls(self) -> dict[str, str]:
        return {name: running.url for name, running in self.sims.items()}

    async def serve(self) -> None:
        """Serve every simulator until `stop` (or cancellation)."""
        if not self.sims:
            self.bind()
        servers = []
        for name, running in self.sims.items():
            config = uvicorn.Config(
                create_app(running.sim),
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=2,
            )
            running.server = uvicorn.Server(config)
            # one process, many servers: the host (not each uvicorn server) owns SIGINT/SIGTERM
            running.server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
            servers.append(running.server.serve(sockets=[running.sock]))
            log.info("simulator %s on %s", name, running.url, event="start")
        tasks = [asyncio.ensure_future(s) for s in servers]
        while not all(r.server is not None and r.server.started for r in self.sims.values()):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        self._ready.set()
        await asyncio.gather(*tasks)

    def request_stop(self) -> None:
        for running in self.sims.values():
            if running.server is not None:
                running.server.should_exit = True

    # -- background use (tests, demo)
    def start_in_thread(self, timeout: float = 20.0) -> dict[str, str]:
        self.bind()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(self.serve())
            except BaseException as exc:  # surfaced to the caller through _error
                self._error = exc
                self._ready.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error:
            raise UnavailableError(f"sandbox did not start: {self._error}")
        return self.urls

    def stop(self) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(10)
        for running in self.sims.values():
            with contextlib.suppress(OSError):
                running.sock.close()

    def __enter__(self) -> SandboxHost:
        self.start_in_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def sim(self, name: str) -> Simulator:
        return self.sims[name].sim

    # -- config for clients
    def client_config(self) -> ClientConfig:
        merged = ClientConfig(
            toml={},
            env={"STOREFLOW_SANDBOX": "true", "APP_ENVIRONMENT": "sandbox"},
        )
        for running in self.sims.values():
            part = running.sim.client_config(running.url)
            _deep_merge(merged.toml, part.toml)
            merged.env.update(part.env)
        return merged

    def write_config(self, path: Path) -> tuple[Path, Path]:
        """Write a complete storeflow TOML at ``path`` and a `.env` beside it."""
        return write_client_config(self.client_config(), path)


def _deep_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            into[key].extend(value)
        else:
            into[key] = value


def write_client_config(config: ClientConfig, path: Path) -> tuple[Path, Path]:
    import tomli_w

    write_private_text(
        path,
        "# Written by `storeflow sandbox up --write-config`: every client points at the sandbox.\n"
        + tomli_w.dumps(config.toml),
    )
    env_path = path.parent / ".env"
    lines = ["# Written by `storeflow sandbox up --write-config` (sandbox credentials only)."]
    lines += [f"{key}={_quote(value)}" for key, value in sorted(config.env.items())]
    write_private_text(env_path, "\n".join(lines) + "\n")  # 0600 from the first byte: it holds credentials
    return path, env_path


def _quote(value: str) -> str:
    if any(c in value for c in " #'\"$"):
        return "'" + value.replace("'", "") + "'"
    return value


def parse_only(only: str | None, default: Iterable[str]) -> list[str]:
    if not only:
        return list(default)
    return [n.strip() for n in only.split(",") if n.strip()]
