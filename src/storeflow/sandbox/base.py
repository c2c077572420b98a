"""What every simulator shares: the ``/_sandbox/...`` convention, faults and OTP codes.

A simulator subclasses `Simulator`, adds its own routes in `install`, and gets:

- ``GET  /_sandbox/health``  -> ``{"ok": true, "name": ...}``
- ``GET  /_sandbox/state``   -> the simulator's state plus active faults
- ``GET  /_sandbox/arrivals`` -> arrival times of the latest requests (``DELETE`` clears them)
- ``POST /_sandbox/faults``  -> inject a fault (see `Fault`); ``DELETE`` clears them
- ``GET  /_sandbox/otp?user=U`` -> ``{"code": "123456"}`` (the MFA webhook answer, docs/hallmark.md ``MFA_METHOD``)
- ``GET  /_sandbox/truth?...`` -> ground truth for a store/date range

Faults apply to every request outside ``/_sandbox/``. State is in memory and
deterministic for a given ``--seed``.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from storeflow.logs import get_logger

log = get_logger("sandbox")


class FaultSpec(BaseModel):
    """A fault to inject: for the next ``count`` requests, or for ``seconds``."""

    status: int | None = Field(default=None, ge=100, le=599, description="answer with this HTTP status")
    latency_ms: int = Field(default=0, ge=0, le=120_000, description="delay before answering")
    truncate: bool = Field(default=False, description="cut the response body in half")
    retry_after: float | None = Field(default=None, ge=0, description="with status 429: Retry-After seconds")
    expire_session: bool = Field(default=False, description="expire every session before answering")
    count: int | None = Field(default=None, ge=1)
    seconds: float | None = Field(default=None, gt=0)
    path: str | None = Field(default=None, description="only requests whose path contains this")


@dataclass
class Fault:
    spec: FaultSpec
    remaining: int | None
    until: float | None
    hits: int = 0

    def live(self, now: float) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        return not (self.until is not None and now > self.until)


class FaultBook:
    """Active faults, consumed in the order they were added."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, spec: FaultSpec) -> None:
        remaining = spec.count if spec.count is not None else (None if spec.seconds else 1)
        until = time.monotonic() + spec.seconds if spec.seconds else None
        with self._lock:
            self._faults.append(Fault(spec, remaining, until))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, path: str) -> FaultSpec | None:
        now = time.monotonic()
        with self._lock:
            self._faults = [f for f in self._faults if f.live(now)]
            for fault in self._faults:
                if fault.spec.path and fault.spec.path not in path:
                    continue
                fault.hits += 1
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault.spec
        return None

    def describe(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return [
                {**f.spec.model_dump(exclude_none=True), "remaining": f.remaining, "hits": f.hits}
                for f in self._faults
                if f.live(now)
            ]


@dataclass
class OtpEntry:
    code: str
    issued_at: float


class OtpBook:
    """One-time codes per user; a new code each time a login asks for one."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._codes: dict[str, OtpEntry] = {}
        self._lock = threading.Lock()

    def issue(self, user: str) -> str:
        with self._lock:
            previous = self._codes.get(user)
            code = f"{self._rng.randrange(10**6):06d}"
            while previous is not None and code == previous.code:
                code = f"{self._rng.randrange(10**6):06d}"
            self._codes[user] = OtpEntry(code, time.time())
            return code

    def current(self, user: str) -> OtpEntry | None:
        with self._lock:
            return self._codes.get(user)

    def check(self, user: str, code: str) -> bool:
        entry = self.current(user)
        return entry is not None and code.strip() == entry.code


@dataclass
class ClientConfig:
    """What `sandbox up --write-config` writes for one simulator."""

    toml: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


class Simulator:
    """Base class of every simulator. Subclasses add routes in `install`."""

    name = "base"
    description = ""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.faults = FaultBook()
        self.otp = OtpBook(random.Random(seed + 7919))
        self.base_url = ""
        self.requests = 0
        # arrival time (time.time()) of the latest requests outside /_sandbox/: what a rate benchmark measures
        self.arrivals: deque[float] = deque(maxlen=100_000)

    # -- hooks for subclasses
    def install(self, app: FastAPI) -> None:
        """Add the simulated system's own routes."""

    def state(self) -> dict[str, Any]:
        return {}

    def truth(self, params: dict[str, str]) -> dict[str, Any]:
        raise HTTPException(404, f"{self.name} has no ground truth")

    def expire_sessions(self) -> None:
        """Invalidate every session/token (fault ``expire_session``)."""

    def client_config(self, base_url: str) -> ClientConfig:
        """Settings that point storeflow's client at this simulator."""
        return ClientConfig()

    def otp_url(self, user: str) -> str:
        return f"{self.base_url}/_sandbox/otp?user={user}"


class _FaultMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: Any, sim: Simulator) -> None:
        super().__init__(app)
        self.sim = sim

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        path = request.url.path
        if path.startswith("/_sandbox/"):
            return await call_next(request)
        self.sim.requests += 1
        self.sim.arrivals.append(time.time())
        spec = self.sim.faults.take(path)
        if spec is None:
            return await call_next(request)
        log.info("fault on %s %s: %s", request.method, path, spec.model_dump(exclude_none=True), event="fault")
        if spec.latency_ms:
            await asyncio.sleep(spec.latency_ms / 1000)
        if spec.expire_session:
            self.sim.expire_sessions()
        if spec.status is not None:
            headers = {}
            if spec.retry_after is not None:
                headers["Retry-After"] = str(
                    int(spec.retry_after) if spec.retry_after.is_integer() else spec.retry_after
                )
            return JSONResponse({"error": "injected fault", "status": spec.status}, spec.status, headers=headers)
        response = await call_next(request)
        if spec.truncate:
            body = b""
            async for chunk in response.body_iterator:  # type: ignore[attr-defined]
                body += chunk if isinstance(chunk, bytes) else chunk.encode()
            headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
            return Response(body[: len(body) // 2], response.status_code, headers=headers)
        return response


def create_app(sim: Simulator) -> FastAPI:
    """The ASGI app of one simulator: the convention endpoints + its own routes."""
    app = FastAPI(title=f"storeflow sandbox: {sim.name}", description=sim.description, docs_url="/_sandbox/docs")
    app.state.sim = sim

    @app.get("/_sandbox/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "name": sim.name, "seed": sim.seed}

    @app.get("/_sandbox/state")
    async def state() -> dict[str, Any]:
        return {"name": sim.name, "requests": sim.requests, "faults": sim.faults.describe(), **sim.state()}

    @app.get("/_sandbox/arrivals")
    async def arrivals() -> dict[str, Any]:
        """When each of the latest requests arrived (Unix seconds): rate measurements from outside."""
        return {"arrivals": list(sim.arrivals)}

    @app.delete("/_sandbox/arrivals")
    async def clear_arrivals() -> dict[str, Any]:
        sim.arrivals.clear()
        return {"ok": True}

    @app.post("/_sandbox/faults")
    async def add_fault(spec: FaultSpec) -> dict[str, Any]:
        sim.faults.add(spec)
        return {"ok": True, "faults": sim.faults.describe()}

    @app.delete("/_sandbox/faults")
    async def clear_faults() -> dict[str, Any]:
        sim.faults.clear()
        return {"ok": True}

    @app.get("/_sandbox/otp")
    async def otp(user: str) -> dict[str, Any]:
        entry = sim.otp.current(user)
        if entry is None:
            entry_code = sim.otp.issue(user)
            return {"code": entry_code}
        return {"code": entry.code}

    @app.get("/_sandbox/truth")
    async def truth(request: Request) -> dict[str, Any]:
        return sim.truth(dict(request.query_params))

    sim.install(app)
    app.add_middleware(_FaultMiddleware, sim=sim)
    return app
