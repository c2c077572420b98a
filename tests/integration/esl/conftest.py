"""Fixtures for the ESL pipeline: the web app on a loopback port, the Hipoink simulator, a worker.

``TEST_DATABASE_POOLER=pgbouncer`` runs every test of the `esl` fixture through PgBouncer in transaction
mode (DATABASE_POOLER=transaction, LISTEN over DATABASE_DIRECT_URL); `esl_pgbouncer` always does.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from storeflow.db.connect import Database
from storeflow.db.pool import PoolConfig
from storeflow.esl.worker import WorkerConfig, WorkerStats, run_worker
from storeflow.sandbox.hipoink import HipoinkSimulator
from storeflow.sandbox.host import SandboxHost
from storeflow.sandbox.shopify import sign_webhook as sign_body
from storeflow.settings import Settings
from storeflow.web.keys import local_api_token
from storeflow.web.server import serve_in_thread

from ..pgbouncer import Bouncer

SHOP = "test-shop.myshopify.com"
STORE = "001"


@dataclass
class Esl:
    """Everything an ESL test needs: settings, database, app URL, simulator.

    ``db_url`` is the database itself (the test's own checks, the CLIs it starts); ``app_db_url`` what
    the fixture's app and `drain` are given: PgBouncer's address when the test runs behind it.
    """

    settings: Settings
    db_url: str
    app_url: str
    hipoink_url: str
    sim: HipoinkSimulator
    secret: str
    app_db_url: str | None = None

    def connect(self) -> psycopg.Connection[dict[str, Any]]:
        return psycopg.connect(self.db_url, row_factory=dict_row, autocommit=True)

    @property
    def worker_db_url(self) -> str:
        """The URL a worker of this test uses (with `worker_config`, which carries the pooler setting)."""
        return self.app_db_url or self.db_url

    @property
    def api_headers(self) -> dict[str, str]:
        """The local token (no STOREFLOW_ADMIN_TOKEN is set): what proves an /api write comes from this machine."""
        return {"Authorization": f"Bearer {local_api_token(self.settings.home)}"}

    def add_mapping(self, shop: str = SHOP, store: str = STORE, **extra: Any) -> int:
        body = {"source_system": "shopify", "source_store_id": shop, "hipoink_store_code": store, **extra}
        response = httpx.post(f"{self.app_url}/api/store-mappings/", json=body, headers=self.api_headers)
        assert response.status_code == 201, response.text
        mapping_id: int = response.json()["id"]
        return mapping_id

    def post(
        self,
        topic: str,
        body: bytes,
        shop: str = SHOP,
        event_id: str | None = None,
        hmac: str | None = "sign",
        **headers: str,
    ) -> httpx.Response:
        sent = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": shop,
            "X-Shopify-Webhook-Id": event_id or f"wh-{time.monotonic_ns()}",
            "X-Shopify-Event-Id": event_id or f"ev-{time.monotonic_ns()}",
            "X-Shopify-API-Version": "2025-07",
            **headers,
        }
        if hmac == "sign":
            sent["X-Shopify-Hmac-Sha256"] = sign_body(self.secret, body)
        elif hmac is not None:
            sent["X-Shopify-Hmac-Sha256"] = hmac
        return httpx.post(f"{self.app_url}/webhooks/shopify/{topic}", content=body, headers=sent, timeout=30)

    def labels(self, store: str = STORE) -> dict[str, dict[str, Any]]:
        data = httpx.get(f"{self.hipoink_url}/_sandbox/products", params={"store_code": store}).json()
        return {p["pc"]: p for p in data["products"]}

    def worker_config(self, **overrides: Any) -> WorkerConfig:
        return WorkerConfig.from_settings(self.settings, **overrides)

    def drain(self, timeout: float = 60, **overrides: Any) -> WorkerStats:
        """Run one worker until nothing is pending or in progress."""
        config = self.worker_config(**overrides)
        return asyncio.run(
            asyncio.wait_for(
                run_worker(
                    self.worker_db_url,
                    config,
                    self.hipoink_url,
                    self.settings.HIPOINK_CLIENT_ID,
                    self.settings.HIPOINK_API_SECRET.get_secret_value(),
                    drain=True,
                ),
                timeout,
            )
        )

    def fault(self, **spec: Any) -> None:
        httpx.post(f"{self.hipoink_url}/_sandbox/faults", json=spec).raise_for_status()


@pytest.fixture
def esl(
    request: pytest.FixtureRequest, db_url: str, make_settings: Callable[..., Settings], sandbox: Any
) -> Iterator[Esl]:
    through = os.environ.get("TEST_DATABASE_POOLER", "")
    if through not in {"", "none", "pgbouncer"}:
        raise pytest.UsageError(f"TEST_DATABASE_POOLER={through!r}: use pgbouncer (or leave it unset)")
    bouncer = request.getfixturevalue("pgbouncer") if through == "pgbouncer" else None
    yield from _esl(db_url, make_settings, sandbox, bouncer)


@pytest.fixture
def esl_pgbouncer(
    pgbouncer: Bouncer, db_url: str, make_settings: Callable[..., Settings], sandbox: Any
) -> Iterator[Esl]:
    """The `esl` fixture through PgBouncer in transaction mode, LISTEN over DATABASE_DIRECT_URL."""
    yield from _esl(db_url, make_settings, sandbox, pgbouncer)


def _esl(
    db_url: str,
    make_settings: Callable[..., Settings],
    sandbox: Callable[..., SandboxHost],
    bouncer: Bouncer | None,
    **extra: str,
) -> Iterator[Esl]:
    from storeflow.web.app import create_app

    host = sandbox("hipoink", seed=5)
    sim = host.sim("hipoink")
    assert isinstance(sim, HipoinkSimulator)
    env = sim.client_config(host.urls["hipoink"]).env
    app_db_url = db_url
    if bouncer is not None:
        app_db_url = bouncer.url(db_url)
        extra = {"DATABASE_POOLER": "transaction", "DATABASE_DIRECT_URL": db_url, **extra}
    settings = make_settings(
        db_url=app_db_url,
        **env,
        APP_ENVIRONMENT="test",
        SYNC_WORKER_INTERVAL_SECONDS="0.5",
        RETRY_INITIAL_DELAY_SECONDS="0.05",
        RETRY_BACKOFF_MULTIPLIER="2",
        MAX_RETRY_ATTEMPTS="4",
        HIPOINK_RATE_LIMIT_PER_SECOND="1000",
        HIPOINK_BATCH_SIZE="50",
        **extra,
    )
    db = Database(app_db_url, kind="test", pool_config=PoolConfig.from_settings(settings))
    with serve_in_thread(create_app(settings, db), "esl test app") as url:
        yield Esl(settings, db_url, url, host.urls["hipoink"], sim, env["SHOPIFY_WEBHOOK_SECRET"], app_db_url)
    db.close()
