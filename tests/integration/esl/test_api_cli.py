"""Store-mapping API and auth, OpenAPI, the `storeflow esl` commands, the sender CLI and the demo step."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from storeflow.db.connect import Database
from storeflow.esl.transform import TOPICS
from storeflow.sandbox.shopify import shopify_dumps
from storeflow.web.server import serve_in_thread

from .conftest import SHOP, STORE, Esl
from .test_webhooks import product, rows

pytestmark = pytest.mark.integration


def test_store_mapping_crud(esl: Esl) -> None:
    api = f"{esl.app_url}/api/store-mappings"
    local = esl.api_headers  # no STOREFLOW_ADMIN_TOKEN: writes carry the local token
    created = httpx.post(
        f"{api}/",
        headers=local,
        json={
            "source_system": "shopify",
            "source_store_id": "A.myshopify.com",
            "hipoink_store_code": "001",
            "is_active": True,
        },
    )
    assert created.status_code == 201
    mapping = created.json()
    assert mapping["source_store_id"] == "a.myshopify.com" and mapping["pc_fallback"] == [
        "barcode",
        "sku",
        "variant_id",
    ]
    duplicate = httpx.post(
        f"{api}/", json={"source_store_id": "a.myshopify.com", "hipoink_store_code": "002"}, headers=local
    )
    assert duplicate.status_code == 409
    assert (
        httpx.post(
            f"{api}/", json={"source_store_id": "b", "hipoink_store_code": "1", "pc_fallback": ["upc"]}, headers=local
        ).status_code
        == 422
    )
    assert [m["id"] for m in httpx.get(f"{api}/").json()] == [mapping["id"]]
    assert httpx.get(f"{api}/{mapping['id']}").json()["hipoink_store_code"] == "001"
    assert httpx.get(f"{api}/999").status_code == 404
    changed = httpx.put(
        f"{api}/{mapping['id']}", json={"hipoink_store_code": "003", "pc_fallback": ["sku"]}, headers=local
    ).json()
    assert (changed["hipoink_store_code"], changed["pc_fallback"], changed["is_active"]) == ("003", ["sku"], True)
    assert httpx.put(f"{api}/999", json={"is_active": False}, headers=local).status_code == 404
    assert httpx.delete(f"{api}/{mapping['id']}", headers=local).json()["is_active"] is False
    assert httpx.get(f"{api}/{mapping['id']}").json()["is_active"] is False


def test_health_root_and_openapi(esl: Esl) -> None:
    assert httpx.get(f"{esl.app_url}/health").json()["status"] == "ok"
    assert httpx.get(f"{esl.app_url}/").json()["webhooks"] == [f"/webhooks/shopify/{t}" for t in TOPICS]
    paths = httpx.get(f"{esl.app_url}/openapi.json").json()["paths"]
    for path in (
        "/api/store-mappings/",
        "/api/store-mappings/{mapping_id}",
        "/webhooks/shopify/products/create",
        "/webhooks/shopify/inventory_levels/update",
        "/health",
        "/",
    ):
        assert path in paths
    assert httpx.get(f"{esl.app_url}/docs").status_code == 200


def test_api_needs_the_bearer_token_when_one_is_set(esl: Esl, make_settings: Any) -> None:
    from storeflow.web.app import create_app

    settings = make_settings(
        db_url=esl.db_url, STOREFLOW_ADMIN_TOKEN="tok-1234567890abcdef", SHOPIFY_WEBHOOK_SECRET=esl.secret
    )
    with serve_in_thread(create_app(settings, Database(esl.db_url), bound_host="0.0.0.0")) as url:
        api = f"{url}/api/store-mappings/"
        assert httpx.get(api).status_code == 401
        assert httpx.get(api, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(api, headers={"Authorization": "Bearer tok-1234567890abcdef"}).status_code == 200
        # webhooks are authenticated by their HMAC, not the token
        reply = httpx.post(
            f"{url}/webhooks/shopify/products/create", content=b"{}", headers={"X-Shopify-Hmac-Sha256": "nope"}
        )
        assert reply.status_code == 401
    open_settings = make_settings(db_url=esl.db_url, STOREFLOW_ADMIN_TOKEN="")
    with serve_in_thread(create_app(open_settings, Database(esl.db_url), bound_host="0.0.0.0")) as url:
        assert httpx.get(f"{url}/api/store-mappings/").status_code == 403


def _cli(tmp_path: Path, db_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": db_url,
        "LOG_DIRECTORY": str(tmp_path / "logs"),
        "STOREFLOW_HOME": str(tmp_path / "home"),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "storeflow", "esl", *args],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_refuses_a_public_host_without_a_token(tmp_path: Path, db_url: str) -> None:
    result = _cli(tmp_path, db_url, "serve", "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert "STOREFLOW_ADMIN_TOKEN" in result.stderr and "Traceback" not in result.stderr


def test_operator_commands(esl: Esl, tmp_path: Path) -> None:
    db = esl.db_url
    added = _cli(
        tmp_path, db, "mappings", "add", "--shop", "CLI.myshopify.com", "--store", "777", "--stock-field", "f2"
    )
    assert added.returncode == 0, added.stderr
    assert "cli.myshopify.com" in added.stdout and "777" in added.stdout
    assert _cli(tmp_path, db, "mappings", "add", "--shop", "cli.myshopify.com", "--store", "1").returncode == 2
    assert _cli(tmp_path, db, "mappings", "add", "--shop", "x", "--store", "1", "--pc-fallback", "upc").returncode == 2
    updated = _cli(tmp_path, db, "mappings", "update", "cli.myshopify.com", "--pc-fallback", "sku,barcode")
    assert updated.returncode == 0 and "sku,barcode" in updated.stdout
    listed = json.loads(_cli(tmp_path, db, "mappings", "list", "--json").stdout)
    assert [(m["hipoink_store_code"], m["stock_field"]) for m in listed] == [("777", "f2")]

    esl.add_mapping()
    esl.post("products/create", shopify_dumps(product()))
    status = json.loads(_cli(tmp_path, db, "status", "--json").stdout)
    assert status["counts"]["pending"] == 1 and status["oldest_pending_age_seconds"] >= 0
    assert status["inbox_last_24h"] == {"enqueued": 1}
    assert "pending" in _cli(tmp_path, db, "status").stdout

    env = {"HIPOINK_API_BASE_URL": esl.hipoink_url, "HIPOINK_API_SECRET": "wrong-sign", "APP_ENVIRONMENT": "test"}
    failed = _cli(tmp_path, db, "worker", "--drain", **env)
    assert failed.returncode == 1 and json.loads(failed.stdout)["items_failed"] == 1
    dead = json.loads(_cli(tmp_path, db, "dead", "--json").stdout)
    assert [(d["state"], d["last_error"]) for d in dead] == [("failed", "error_code 40001: sign error")]
    assert "re-enqueued 1 item(s)" in _cli(tmp_path, db, "retry", "--store", STORE).stdout
    env["HIPOINK_API_SECRET"] = esl.settings.HIPOINK_API_SECRET.get_secret_value()
    drained = _cli(tmp_path, db, "worker", "--drain", **env)
    assert drained.returncode == 0, drained.stderr
    assert json.loads(drained.stdout)["items_succeeded"] == 1
    esl.sim.stores.clear()
    resync = _cli(tmp_path, db, "resync", "--store", STORE)
    assert resync.returncode == 0 and "1 product(s) enqueued" in resync.stdout
    assert _cli(tmp_path, db, "resync", "--store", "nope").returncode == 2
    assert _cli(tmp_path, db, "worker", "--drain", **env).returncode == 0
    assert "4006381333931" in esl.labels()
    assert rows(esl, "SELECT reason FROM sync_queue ORDER BY id") == [{"reason": "retry"}, {"reason": "resync"}]
    deactivated = _cli(tmp_path, db, "mappings", "deactivate", "777")
    assert deactivated.returncode == 0 and " no " in deactivated.stdout


def _send(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`storeflow sandbox shopify send ARGS` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "storeflow", "sandbox", "shopify", "send", *args],
        env={**os.environ, "LOG_DIRECTORY": str(tmp_path / "logs")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sender_cli_against_the_receiver(esl: Esl, tmp_path: Path) -> None:
    esl.add_mapping()
    sent = _send(tmp_path, "--url", esl.app_url, "--secret", esl.secret, "--topic", "products/update",
                 "--count", "20", "--shop", SHOP, "--duplicates", "0.3", "--shuffle", "--rate", "200")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    summary = json.loads(sent.stdout)
    assert summary["statuses"] == {"200": 20 + summary["duplicates"]} and summary["duplicates"] > 0
    outcomes = {r["outcome"]: r["n"] for r in rows(esl, "SELECT outcome, count(*) AS n FROM webhook_inbox GROUP BY 1")}
    assert outcomes["duplicate"] == summary["duplicates"]
    assert outcomes["enqueued"] + outcomes.get("stale", 0) == 20
    esl.drain()
    # whatever the delivery order, every label shows the newest version (version 2 of each product)
    newest = {r["pc"]: r["pp"] for r in rows(esl, "SELECT pc, pp FROM products WHERE status = 'valid'")}
    assert {pc: p["pp"] for pc, p in esl.labels().items()} == newest
    wrong = _send(tmp_path, "--url", esl.app_url, "--secret", "bad", "--topic", "products/create", "--count", "2")
    assert wrong.returncode == 1 and json.loads(wrong.stdout)["statuses"] == {"401": 2}


def test_sandbox_write_config_carries_the_esl_settings(tmp_path: Path) -> None:
    from storeflow.sandbox.host import SandboxHost
    from storeflow.settings import load_settings

    host = SandboxHost(["hipoink"], port_base=0, seed=9)
    host.bind()
    urls = host.urls
    try:
        _, env_path = host.write_config(tmp_path / "sb" / "storeflow.toml")
    finally:
        for running in host.sims.values():
            running.sock.close()
    text = env_path.read_text()
    for key in ("HIPOINK_API_BASE_URL", "HIPOINK_CLIENT_ID", "HIPOINK_API_SECRET", "SHOPIFY_WEBHOOK_SECRET"):
        assert f"{key}=" in text
    settings = load_settings(tmp_path / "sb" / "storeflow.toml", env={})
    assert settings.HIPOINK_API_BASE_URL == urls["hipoink"]
    assert settings.SHOPIFY_WEBHOOK_SECRET is not None


def test_demo_step(esl: Esl, sandbox: Any, tmp_path: Path) -> None:
    from rich.console import Console

    from storeflow.demo import DemoContext
    from storeflow.esl.demo import STORE as DEMO_STORE
    from storeflow.esl.demo import run_demo

    host = sandbox("hipoink", seed=7)
    env = host.sim("hipoink").client_config(host.urls["hipoink"]).env
    esl.settings.HIPOINK_API_BASE_URL = env["HIPOINK_API_BASE_URL"]
    esl.settings.HIPOINK_API_SECRET = type(esl.settings.HIPOINK_API_SECRET)(env["HIPOINK_API_SECRET"])
    db = Database(esl.db_url)
    try:
        result = run_demo(DemoContext(esl.settings, db, host, tmp_path, Console(file=io.StringIO())))
    finally:
        db.close()
    assert result.ok, result
    labels = httpx.get(f"{env['HIPOINK_API_BASE_URL']}/_sandbox/products", params={"store_code": DEMO_STORE}).json()
    assert labels["count"] > 50
