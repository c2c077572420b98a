"""Access to /api, /dashboard, /metrics and /docs against a real `storeflow serve` (a subprocess) or the app
under uvicorn on 127.0.0.1 (docs/security.md)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import selectors
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from storeflow.dashboard import auth
from storeflow.db.connect import Database
from storeflow.settings import Settings
from storeflow.web.app import create_app
from storeflow.web.keys import LOCAL_TOKEN, SERVER_KEY, read_or_create_secret
from storeflow.web.server import serve_in_thread

pytestmark = pytest.mark.integration

TOKEN = "admin-token-0123456789abcdef"
PASSWORD = "correct-horse-42"
MAPPING = {"source_system": "shopify", "source_store_id": "sec.myshopify.com", "hipoink_store_code": "S9"}


@contextlib.contextmanager
def storeflow_serve(tmp_path: Path, db_url: str, **env: str) -> Iterator[str]:
    """`storeflow serve --port 0` in a subprocess; yields its base URL, stops it afterwards."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": db_url,
        "STOREFLOW_HOME": str(tmp_path / "home"),
        "LOG_DIRECTORY": str(tmp_path / "logs"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "storeflow", "serve", "--port", "0"],
        env={**base, **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + 60
            found = None
            while found is None and time.monotonic() < deadline and proc.poll() is None:
                if sel.select(timeout=1):
                    found = re.search(r"serving on (http://127\.0\.0\.1:\d+)", proc.stdout.readline())
            if found is None:
                pytest.fail(f"storeflow serve did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
        url = found.group(1)
        deadline = time.monotonic() + 30
        while True:  # uvicorn prints before it accepts
            try:
                httpx.get(f"{url}/health", timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()


@contextlib.contextmanager
def forwarder(url: str) -> Iterator[str]:
    """A TCP forwarder that adds no header, like `ssh -L`, socat or a bare `proxy_pass`; yields its URL."""
    port = int(url.rsplit(":", 1)[1])
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pump, args=(a, b), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@contextlib.contextmanager
def served(settings: Settings, db_url: str, bound_host: str = "127.0.0.1") -> Iterator[str]:
    db = Database(db_url, kind="test")
    try:
        with serve_in_thread(create_app(settings, db, bound_host=bound_host), "security test app") as url:
            yield url
    finally:
        db.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client: httpx.Client, password: str = PASSWORD) -> httpx.Response:
    page = client.get("/dashboard/login")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
    assert csrf is not None, page.text
    return client.post(
        "/dashboard/login", data={"username": "ops", "password": password, "next": "/dashboard", "csrf": csrf[1]}
    )


# ---------------------------------------------------------------- credentials required once configured


@pytest.mark.parametrize(
    "env", [{"STOREFLOW_ADMIN_TOKEN": TOKEN}, {"DASHBOARD_PASSWORD": PASSWORD, "DASHBOARD_USERNAME": "ops"}]
)
def test_a_headerless_forwarder_reaches_nothing_once_a_credential_is_set(
    tmp_path: Path, db_url: str, env: dict[str, str]
) -> None:
    with storeflow_serve(tmp_path, db_url, **env) as url, forwarder(url) as proxied:
        for base in (proxied, url):  # through the forwarder, and loopback itself
            with httpx.Client(base_url=base, timeout=10) as client:
                assert client.get("/api/store-mappings/").status_code == 401
                assert client.post("/api/store-mappings/", json=MAPPING).status_code in {401, 403}
                page = client.get("/dashboard/esl", headers={"accept": "text/html"})
                assert page.status_code == 303 and page.headers["location"].startswith("/dashboard/login")
                assert client.get("/dashboard/esl").status_code == 401
                assert client.get("/metrics").status_code == 401
                assert client.get("/docs").status_code == 401
                assert client.get("/openapi.json").status_code == 401
                assert client.get("/health").status_code == 200  # container health checks stay open
        if "STOREFLOW_ADMIN_TOKEN" in env:
            with httpx.Client(base_url=proxied, timeout=10, headers=bearer(TOKEN)) as client:
                assert client.post("/api/store-mappings/", json=MAPPING).status_code == 201
                assert client.get("/metrics").status_code == 200
                assert client.get("/dashboard/esl").status_code == 200


def test_local_mode_api_writes_need_the_local_token(tmp_path: Path, db_url: str) -> None:
    with storeflow_serve(tmp_path, db_url) as url, forwarder(url) as proxied:
        token_file = tmp_path / "home" / LOCAL_TOKEN
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        for base in (proxied, url):
            assert httpx.post(f"{base}/api/store-mappings/", json=MAPPING).status_code == 403
            assert httpx.delete(f"{base}/api/store-mappings/1").status_code == 403
            wrong = httpx.post(f"{base}/api/store-mappings/", json=MAPPING, headers=bearer("0" * 64))
            assert wrong.status_code == 401
        assert httpx.get(f"{url}/api/store-mappings/").json() == []  # nothing was written
        local = bearer(token_file.read_text().strip())
        assert httpx.post(f"{proxied}/api/store-mappings/", json=MAPPING, headers=local).status_code == 201
        assert httpx.get(f"{url}/dashboard/esl").status_code == 200  # local mode: read-only pages stay open


# ---------------------------------------------------------------- Host header (DNS rebinding)


def test_a_foreign_host_header_is_refused_on_every_path(tmp_path: Path, db_url: str) -> None:
    with storeflow_serve(tmp_path, db_url, STOREFLOW_ADMIN_TOKEN=TOKEN) as url:
        port = url.rsplit(":", 1)[1]
        for path, method in [
            ("/health", "GET"),
            ("/dashboard", "GET"),
            ("/metrics", "GET"),
            ("/api/store-mappings/", "GET"),
            ("/webhooks/shopify/products/create", "POST"),  # the pure-ASGI fast path
        ]:
            for host in ("attacker.example", f"attacker.example:{port}", "127.0.0.1.attacker.example", ""):
                reply = httpx.request(method, url + path, headers={"Host": host, **bearer(TOKEN)}, content=b"{}")
                assert reply.status_code == 400, (path, host)
                assert "STOREFLOW_ALLOWED_HOSTS" in reply.text
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}"):
            assert httpx.get(url + "/health", headers={"Host": host}).status_code == 200, host
    with storeflow_serve(
        tmp_path, db_url, STOREFLOW_ADMIN_TOKEN=TOKEN, STOREFLOW_ALLOWED_HOSTS="shop-labels.example.com"
    ) as url:
        assert httpx.get(url + "/health", headers={"Host": "shop-labels.example.com"}).status_code == 200
        assert httpx.get(url + "/health").status_code == 200  # the bound host is always allowed
        assert httpx.get(url + "/health", headers={"Host": "localhost"}).status_code == 400


# ---------------------------------------------------------------- failed-credential limiter


def test_basic_brute_force_is_locked_and_the_form_says_so(make_settings: Callable[..., Settings], db_url: str) -> None:
    settings = make_settings(db_url=db_url, DASHBOARD_USERNAME="ops", DASHBOARD_PASSWORD=PASSWORD)
    with served(settings, db_url) as url, httpx.Client(base_url=url, timeout=10) as client:
        for i in range(5):  # a changing X-Forwarded-For does not make another client (no trusted proxy)
            wrong = client.get("/metrics", auth=("ops", f"guess-{i}"), headers={"X-Forwarded-For": f"198.51.100.{i}"})
            assert wrong.status_code == 401
        assert client.get("/metrics", auth=("ops", PASSWORD)).status_code == 429  # locked: even the right one
        assert client.get("/dashboard/esl", auth=("ops", PASSWORD)).status_code == 429
        assert client.get("/api/store-mappings/", headers=bearer("x" * 20)).status_code == 429
        form = login(client)
        assert form.status_code == 303 and "locked=1" in form.headers["location"]
        page = client.get(form.headers["location"])
        assert "Too many failed attempts from this address: wait 5 minutes" in page.text
        assert auth.COOKIE not in client.cookies


def test_forwarded_headers_count_only_from_a_trusted_proxy(make_settings: Callable[..., Settings], db_url: str) -> None:
    settings = make_settings(
        db_url=db_url, DASHBOARD_USERNAME="ops", DASHBOARD_PASSWORD=PASSWORD, FORWARDED_ALLOW_IPS="127.0.0.1"
    )
    with served(settings, db_url) as url, httpx.Client(base_url=url, timeout=10) as client:
        for i in range(5):  # five clients behind the trusted proxy, one failure each
            assert (
                client.get("/metrics", auth=("ops", "x"), headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code
                == 401
            )
        ok = client.get("/metrics", auth=("ops", PASSWORD), headers={"X-Forwarded-For": "198.51.100.77"})
        assert ok.status_code == 200
        https = client.headers.copy()
        https["X-Forwarded-Proto"] = "https"
        client.headers = https
        assert "secure" in login(client).headers["set-cookie"].lower()


def test_session_cookie_is_secure_only_over_https(make_settings: Callable[..., Settings], db_url: str) -> None:
    settings = make_settings(db_url=db_url, DASHBOARD_USERNAME="ops", DASHBOARD_PASSWORD=PASSWORD)
    with served(settings, db_url) as url, httpx.Client(base_url=url, timeout=10) as client:
        client.headers["X-Forwarded-Proto"] = "https"  # nobody trusted said so: plain http
        cookie = login(client).headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie


# ---------------------------------------------------------------- CSRF


def test_csrf_key_is_a_private_random_file_not_derived_from_the_password(
    make_settings: Callable[..., Settings], db_url: str, tmp_path: Path
) -> None:
    settings = make_settings(db_url=db_url, DASHBOARD_USERNAME="ops", DASHBOARD_PASSWORD=PASSWORD)
    with served(settings, db_url) as url:
        page = httpx.get(f"{url}/dashboard/login").text
    key_file = settings.home / SERVER_KEY
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    shown = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert shown is not None and shown[1] == auth.csrf_token(settings, None)
    # the old derivation (one SHA-256 of the password) no longer reproduces what a page shows
    old_key = hashlib.sha256(b"storeflow-dashboard\0" + PASSWORD.encode() + b"\0ops").digest()
    assert hmac.new(old_key, b"csrf|local", hashlib.sha256).hexdigest()[:32] != shown[1]
    other_home = make_settings(
        db_url=db_url, DASHBOARD_USERNAME="ops", DASHBOARD_PASSWORD=PASSWORD, STOREFLOW_HOME=str(tmp_path / "h2")
    )
    assert auth.csrf_token(other_home, None) != shown[1]  # same password, another home: another key


def test_concurrent_processes_of_one_home_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "home" / SERVER_KEY
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: read_or_create_secret(path), range(16)))
    assert len(keys) == 1 and [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_logout_needs_the_csrf_token(make_settings: Callable[..., Settings], db_url: str) -> None:
    settings = make_settings(db_url=db_url, DASHBOARD_USERNAME="ops", DASHBOARD_PASSWORD=PASSWORD)
    with served(settings, db_url) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert login(client).status_code == 303
        assert client.post("/dashboard/logout").status_code == 403
        assert client.post("/dashboard/logout", data={"csrf": "0" * 32}).status_code == 403
        page = client.get("/dashboard/esl")
        assert page.status_code == 200  # still logged in
        csrf = re.search(r'action="/dashboard/logout".*?name="csrf" value="([0-9a-f]+)"', page.text)
        assert csrf, "the page has no logout form with a csrf field"
        assert client.post("/dashboard/logout", data={"csrf": csrf[1]}).status_code == 303
        assert client.get("/dashboard/esl").status_code == 401


# ---------------------------------------------------------------- /docs


def test_docs_only_for_authenticated_callers_and_without_a_cdn(
    make_settings: Callable[..., Settings], db_url: str
) -> None:
    settings = make_settings(db_url=db_url, STOREFLOW_ADMIN_TOKEN=TOKEN)
    with served(settings, db_url) as url:
        assert httpx.get(f"{url}/docs").status_code == 401
        assert httpx.get(f"{url}/openapi.json").status_code == 401
        assert httpx.get(f"{url}/redoc").status_code == 404
        docs = httpx.get(f"{url}/docs", headers=bearer(TOKEN))
        assert docs.status_code == 200 and "/api/store-mappings/" in docs.text
        assert "<script" not in docs.text and "cdn" not in docs.text.lower()
        assert "default-src 'none'" in docs.headers["content-security-policy"]
        assert "/api/store-mappings/" in httpx.get(f"{url}/openapi.json", headers=bearer(TOKEN)).json()["paths"]
    off = make_settings(db_url=db_url, STOREFLOW_ADMIN_TOKEN=TOKEN, STOREFLOW_API_DOCS="false")
    with served(off, db_url) as url:
        assert httpx.get(f"{url}/docs", headers=bearer(TOKEN)).status_code == 404
        assert httpx.get(f"{url}/openapi.json", headers=bearer(TOKEN)).status_code == 404


# ---------------------------------------------------------------- Content-Type, admin token


def test_a_non_json_body_to_api_is_refused_with_415(tmp_path: Path, db_url: str) -> None:
    import json

    body = json.dumps(MAPPING)
    with storeflow_serve(tmp_path, db_url, STOREFLOW_ADMIN_TOKEN=TOKEN) as url:
        api = f"{url}/api/store-mappings/"
        for content_type in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", None):
            headers = bearer(TOKEN) | ({"Content-Type": content_type} if content_type else {})
            assert httpx.post(api, content=body, headers=headers).status_code == 415, content_type
        put = httpx.put(f"{api}1", content=body, headers=bearer(TOKEN) | {"Content-Type": "text/plain"})
        assert put.status_code == 415
        assert httpx.get(api, headers=bearer(TOKEN)).json() == []  # nothing was created
        created = httpx.post(api, content=body, headers=bearer(TOKEN) | {"Content-Type": "application/json"})
        assert created.status_code == 201


@pytest.mark.parametrize("token", ["", "   ", "short-token-15ch"[:15]])
def test_serve_refuses_an_empty_or_short_admin_token(tmp_path: Path, db_url: str, token: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "storeflow", "serve", "--port", "0"],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATABASE_URL": db_url,
            "STOREFLOW_HOME": str(tmp_path / "home"),
            "LOG_DIRECTORY": str(tmp_path / "logs"),
            "STOREFLOW_ADMIN_TOKEN": token,
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "STOREFLOW_ADMIN_TOKEN" in result.stderr and "Traceback" not in result.stderr
