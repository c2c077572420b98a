"""`storeflow serve --workers 2`: two processes on one port, SIGHUP replaces them without a refused
request, SIGTERM stops them all (issue 14, many receivers)."""

from __future__ import annotations

import http.client
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from storeflow.sandbox.shopify import shopify_dumps
from storeflow.sandbox.shopify import sign_webhook as sign_body

pytestmark = pytest.mark.integration

SECRET = "shpss_serve_workers_0123456789abcdef"
SHOP = "workers-shop.myshopify.com"


@dataclass
class Served:
    proc: subprocess.Popen[str]
    port: int
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    reader: threading.Thread | None = None

    def wait_line(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, f"storeflow serve exited ({self.proc.returncode})"
                continue
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout} s")

    def workers(self) -> set[int]:
        """The server processes: the children of `storeflow serve` started by multiprocessing's spawn."""
        found = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == self.proc.pid and b"spawn_main" in cmdline:
                found.add(int(entry))
        return found


def _start(tmp_path: Path, db_url: str, workers: int = 2) -> Served:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": db_url,
        "STOREFLOW_HOME": str(tmp_path / "home"),
        "LOG_DIRECTORY": str(tmp_path / "logs"),
        "SHOPIFY_WEBHOOK_SECRET": SECRET,
        "APP_ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
    }
    cmd = [sys.executable, "-m", "storeflow", "serve", "--port", "0", "--workers", str(workers)]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    served = Served(proc, 0)

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            served.lines.put(line)

    served.reader = threading.Thread(target=read, daemon=True)
    served.reader.start()
    line = served.wait_line("serving on")
    served.port = int(line.split("http://127.0.0.1:")[1].split()[0])
    return served


@pytest.fixture
def served(tmp_path: Path, db_url: str) -> Iterator[Served]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO store_mappings (source_store_id, hipoink_store_code) VALUES (%s, '001')", (SHOP,))
    served = _start(tmp_path, db_url)
    try:
        yield served
    finally:
        if served.proc.poll() is None:  # the test failed before SIGTERM: stop the workers too
            for pid in served.workers():
                os.kill(pid, signal.SIGKILL)
            served.proc.kill()
        served.proc.wait(30)
        if served.reader is not None:
            served.reader.join(10)
        assert served.proc.stdout is not None
        served.proc.stdout.close()


def _owner(port: int, client_port: int, pids: set[int]) -> int | None:
    """Which of ``pids`` holds the server end of the loopback connection from ``client_port``."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        local, remote = parts[1].split(":")[1], parts[2].split(":")[1]
        if int(local, 16) == port and int(remote, 16) == client_port:
            inode = parts[9]
    if inode is None:
        return None
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


_counter = iter(range(1, 10**9))
_lock = threading.Lock()


def post_webhook(port: int, pids: set[int] | None = None) -> tuple[int, int | None]:
    """One products/update on a new connection: (status, the server process that answered it)."""
    with _lock:
        n = next(_counter)
    body = shopify_dumps({"id": 10**12 + n, "title": f"P{n}", "variants": [{"id": 10**13 + n, "price": "1.00"}]})
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "products/update",
        "X-Shopify-Shop-Domain": SHOP,
        "X-Shopify-Hmac-Sha256": sign_body(SECRET, body),
        "X-Shopify-Webhook-Id": f"wh-{n}",
        "X-Shopify-Event-Id": f"ev-{n}",
    }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/webhooks/shopify/products/update", body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        owner = _owner(port, conn.sock.getsockname()[1], pids) if pids else None
        return response.status, owner
    finally:
        conn.close()


def _inbox(db_url: str) -> dict[str, int]:
    with psycopg.connect(db_url) as conn:
        return dict(conn.execute("SELECT outcome, count(*) FROM webhook_inbox GROUP BY 1").fetchall())


def test_two_worker_processes_accept_webhooks_reload_on_sighup_and_stop_on_sigterm(served: Served, db_url: str) -> None:
    first = served.workers()
    assert len(first) == 2, first

    # both processes accept: 4 senders, a new connection per webhook
    owners: list[int | None] = []
    statuses: list[int] = []

    def send(count: int) -> None:
        for _ in range(count):
            status, owner = post_webhook(served.port, first)
            statuses.append(status)
            owners.append(owner)

    senders = [threading.Thread(target=send, args=(50,)) for _ in range(4)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    assert statuses == [200] * 200
    assert set(owners) == first, {pid: owners.count(pid) for pid in set(owners)}

    # SIGHUP while webhooks keep arriving: every one is answered 200, by new processes afterwards
    stop = threading.Event()
    during: list[int | str] = []

    def keep_sending() -> None:
        while not stop.is_set():
            try:
                during.append(post_webhook(served.port)[0])
            except OSError as exc:
                during.append(repr(exc))

    sender = threading.Thread(target=keep_sending)
    sender.start()
    try:
        time.sleep(0.5)
        served.proc.send_signal(signal.SIGHUP)
        assert "reloaded 2 of 2" in served.wait_line("storeflow reloaded")
        time.sleep(0.5)
    finally:
        stop.set()
        sender.join(60)
    assert during and all(status == 200 for status in during), [s for s in during if s != 200][:5]
    second = served.workers()
    assert len(second) == 2 and not second & first, (first, second)
    assert post_webhook(served.port, second)[1] in second
    assert _inbox(db_url) == {"enqueued": 200 + len(during) + 1}

    # SIGTERM stops the parent and every worker
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(60) == 0
    assert not [pid for pid in first | second if Path(f"/proc/{pid}").exists()]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_sigint_right_after_the_serving_line_stops_serve(tmp_path: Path, db_url: str, workers: int) -> None:
    """The line is printed once uvicorn's signal handlers are in place, so a SIGINT sent the moment it
    appears is handled (it used to come before them, and such a SIGINT could be swallowed)."""
    served = _start(tmp_path, db_url, workers)
    children = served.workers()
    try:
        served.proc.send_signal(signal.SIGINT)
        code = served.proc.wait(60)
    finally:
        if served.proc.poll() is None:
            for pid in served.workers():
                os.kill(pid, signal.SIGKILL)
            served.proc.kill()
            served.proc.wait(30)
        if served.reader is not None:
            served.reader.join(10)
        assert served.proc.stdout is not None
        served.proc.stdout.close()
    assert code in {0, 130}, code  # 130: the single process unwinds like Ctrl-C
    assert len(children) == (workers if workers > 1 else 0)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
