"""`storeflow esl reconcile` and `storeflow esl subscriptions` as an operator runs them, and `doctor`'s scope check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from storeflow.doctor import shopify_scope_checks
from storeflow.esl.reconcile_run import shop_overview
from storeflow.sandbox.shopify import make_product
from storeflow.settings import load_settings

from .conftest import SHOP
from .test_reconcile import PRODUCTS, SEED, Admin, admin, deliver
from .test_webhooks import rows

pytestmark = pytest.mark.integration
__all__ = ["admin"]  # the fixture, shared with test_reconcile
TOKEN_ENV = "SHOPIFY_TOKEN_TEST_SHOP"


def write_config(tmp_path: Path, admin: Admin) -> Path:
    path = tmp_path / "storeflow.toml"
    path.write_text(
        "[[esl.shops]]\n"
        f'shop = "{SHOP}"\n'
        f'admin_token_env = "{TOKEN_ENV}"\n'
        f'admin_api_base_url = "{admin.url}"\n'
        f'callback_base_url = "{admin.esl.app_url}"\n',
        encoding="utf-8",
    )
    return path


def cli(tmp_path: Path, admin: Admin, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`storeflow esl ARGS` (or `storeflow ARGS` when the first one is ``--top``)."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DATABASE_URL": admin.esl.db_url,
        "LOG_DIRECTORY": str(tmp_path / "logs"),
        "LOG_LEVEL": "DEBUG",
        "STOREFLOW_HOME": str(tmp_path / "home"),
        "STOREFLOW_CONFIG": str(write_config(tmp_path, admin)),
        TOKEN_ENV: admin.token,
        "COLUMNS": "200",
    }
    command = list(args[1:]) if args and args[0] == "--top" else ["esl", *args]
    return subprocess.run(
        [sys.executable, "-m", "storeflow", *command],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_reconcile_cli_dry_run_then_for_real_and_the_token_never_logged(admin: Admin, tmp_path: Path) -> None:
    deliver(admin, "products/create", drop=0.2)
    dry = cli(tmp_path, admin, "reconcile", "--shop", SHOP, "--full", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "create  product" in dry.stdout and "(dry run)" in dry.stdout
    assert rows(admin.esl, "SELECT count(*) AS n FROM reconcile_runs") == [{"n": 0}]
    real = cli(tmp_path, admin, "reconcile", "--shop", "all", "--full", "--json")
    assert real.returncode == 0, real.stderr
    [summary] = json.loads(real.stdout)
    assert summary["method"] == "bulk" and summary["created"] > 0 and summary["status"] == "succeeded"
    admin.esl.drain()
    assert admin.labels() == admin.expected_labels()
    assert cli(tmp_path, admin, "reconcile", "--shop", "nope.myshopify.com").returncode == 2
    bad = cli(tmp_path, admin, "reconcile", "--shop", SHOP, **{TOKEN_ENV: "shpat_wrong"})
    assert bad.returncode == 1 and "refused the access token" in bad.stdout + bad.stderr
    shown = cli(tmp_path, admin, "--top", "config", "show")
    assert shown.returncode == 0, shown.stderr
    assert f"{TOKEN_ENV}=********" in shown.stdout
    logged = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").rglob("*") if p.is_file())
    assert "reconciliation" in logged
    for output in (logged, dry.stdout, dry.stderr, real.stdout, real.stderr, bad.stdout, bad.stderr, shown.stdout):
        assert admin.token not in output and "shpat_wrong" not in output


def test_check_recreates_a_removed_subscription_with_one_alert_and_reconciles(
    admin: Admin, tmp_path: Path, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    hook, alerts = receiver
    synced = cli(tmp_path, admin, "subscriptions", "sync", "--shop", SHOP, "--json")
    assert synced.returncode == 0, synced.stderr
    assert sorted(json.loads(synced.stdout)[0]["created"]) == [
        "INVENTORY_LEVELS_UPDATE",
        "PRODUCTS_CREATE",
        "PRODUCTS_DELETE",
        "PRODUCTS_UPDATE",
    ]
    again = json.loads(cli(tmp_path, admin, "subscriptions", "sync", "--shop", SHOP, "--json").stdout)[0]
    assert again["created"] == [] and again["present"] == 4
    deliver(admin, "products/create")
    admin.esl.drain()

    # Shopify gives up on products/update after 8 failures; price changes then never arrive
    httpx.post(f"{admin.url}/_sandbox/subscriptions/remove", json={"shop": SHOP, "topic": "PRODUCTS_UPDATE"})
    changed = admin.control("mutate", change_prices=3)["changed"]
    listed = cli(tmp_path, admin, "subscriptions", "list", "--shop", SHOP)
    assert "PRODUCTS_UPDATE" in listed.stdout and "missing" in listed.stdout

    checked = cli(tmp_path, admin, "subscriptions", "check", "--shop", SHOP, "--json", ALERT_WEBHOOK_URL=hook)
    assert checked.returncode == 0, checked.stderr
    [result] = json.loads(checked.stdout)
    assert result["missing"] == ["PRODUCTS_UPDATE"] and result["created"] == ["PRODUCTS_UPDATE"]
    assert result["reconcile"]["updated"] >= len(changed) == 3
    assert len(alerts) == 1
    assert (
        "Shopify deleted the products/update subscription of shop test-shop.myshopify.com; re-created;"
        in (alerts[0]["message"])
    )
    assert "reconciling since" in alerts[0]["message"]
    admin.esl.drain()
    assert admin.labels() == admin.expected_labels()

    quiet = cli(tmp_path, admin, "subscriptions", "check", "--shop", SHOP, "--json", ALERT_WEBHOOK_URL=hook)
    assert json.loads(quiet.stdout)[0]["missing"] == [] and len(alerts) == 1
    checks = rows(
        admin.esl, "SELECT action, missing, created, reconcile_run_id FROM webhook_subscription_checks ORDER BY id"
    )
    assert [c["action"] for c in checks] == ["sync", "sync", "check", "check"]
    assert checks[2]["missing"] == ["PRODUCTS_UPDATE"] and checks[2]["reconcile_run_id"] is not None
    runs = rows(admin.esl, "SELECT trigger, mode FROM reconcile_runs")
    assert runs == [{"trigger": "subscriptions-check", "mode": "incremental"}]

    with admin.esl.connect() as conn:
        [overview] = shop_overview(conn)
    assert overview["shop"] == SHOP and overview["subscriptions"] == "ok" and overview["drift"] >= 3
    assert overview["last_webhook_at"] is not None and overview["last_run_status"] == "succeeded"


def test_prune_deletes_our_topics_pointing_elsewhere(admin: Admin, tmp_path: Path) -> None:
    old = admin.client(callback_base_url="https://old-host.example")
    made, errors = old.create_subscription(
        "PRODUCTS_UPDATE", "https://old-host.example/webhooks/shopify/products/update"
    )
    assert made and errors == []
    kept = json.loads(cli(tmp_path, admin, "subscriptions", "sync", "--shop", SHOP, "--json").stdout)[0]
    assert kept["deleted"] == []
    pruned = json.loads(cli(tmp_path, admin, "subscriptions", "sync", "--shop", SHOP, "--prune", "--json").stdout)[0]
    assert pruned["deleted"] == ["PRODUCTS_UPDATE https://old-host.example/webhooks/shopify/products/update"]
    assert len(admin.client().subscriptions()) == 4


def test_doctor_names_a_missing_scope(admin: Admin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write_config(tmp_path, admin)
    monkeypatch.setenv(TOKEN_ENV, admin.token)
    [ok] = shopify_scope_checks(load_settings(config))
    assert ok.status == "ok"
    admin.control("shops", products=PRODUCTS, seed=SEED, scopes=["read_products"])
    [check] = shopify_scope_checks(load_settings(config))
    assert check.status == "fail" and "read_inventory" in check.detail and check.name == f"shopify {SHOP}"
    monkeypatch.setenv(TOKEN_ENV, "")
    [unset] = shopify_scope_checks(load_settings(config))
    assert unset.status == "fail" and TOKEN_ENV in unset.detail


def test_sender_drop_applies_every_change_to_the_admin_simulator(admin: Admin, tmp_path: Path) -> None:
    sent = subprocess.run(
        [sys.executable, "-m", "storeflow", "sandbox", "shopify", "send", "--url", admin.esl.app_url,
         "--secret", admin.esl.secret, "--topic", "products/update", "--count", str(PRODUCTS), "--shop", SHOP,
         "--seed", str(SEED), "--drop", "0.25", "--admin-url", admin.url],
        env={**os.environ, "LOG_DIRECTORY": str(tmp_path / "logs")},
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    summary = json.loads(sent.stdout)
    assert 0 < summary["dropped"] < PRODUCTS and summary["statuses"] == {"200": PRODUCTS - summary["dropped"]}
    truth = httpx.get(f"{admin.url}/_sandbox/truth", params={"shop": SHOP}).json()
    version1 = {str(v["id"]): v["price"] for i in range(PRODUCTS) for v in make_product(SEED, i, version=1)["variants"]}
    assert {v["variant_id"]: v["price"] for v in truth["variants"]} == version1  # dropped ones too
    assert rows(admin.esl, "SELECT count(*) AS n FROM webhook_inbox") == [{"n": PRODUCTS - summary["dropped"]}]
    full = cli(tmp_path, admin, "reconcile", "--shop", SHOP, "--full", "--json")
    assert json.loads(full.stdout)[0]["created"] > 0  # the dropped products reach the labels anyway
    admin.esl.drain()
    assert admin.labels() == admin.expected_labels()
