"""The web app, the demo and the sandbox import their parts directly: a missing part fails, not a quiet gap."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from storeflow.crm import demo as crm_demo
from storeflow.db.connect import Database
from storeflow.demo import demo_steps
from storeflow.esl import demo as esl_demo
from storeflow.esl.api import WEBHOOK_PATHS
from storeflow.hallmark import demo as hallmark_demo
from storeflow.sandbox.base import Simulator
from storeflow.sandbox.registry import SIMULATORS
from storeflow.web.app import create_app
from storeflow.web.server import serve_in_thread

pytestmark = pytest.mark.integration


def test_the_app_serves_the_webhooks_the_api_and_the_dashboard(make_settings: Callable[..., Any], db_url: str) -> None:
    with serve_in_thread(create_app(make_settings(), Database(db_url, kind="test"))) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/nope").status_code == 404
            assert client.get("/dashboard/login").status_code == 200
            assert client.get("/api/store-mappings/").json() == []
            for path in WEBHOOK_PATHS:  # answered (unsigned: refused), not 404
                assert client.post(path, content=b"{}").status_code == 401, path


def test_every_pipeline_has_its_demo_step() -> None:
    assert demo_steps() == {
        "hallmark": hallmark_demo.run_demo,
        "crm": crm_demo.run_demo,
        "esl": esl_demo.run_demo,
    }


def test_every_simulator_is_a_class_by_its_name() -> None:
    assert set(SIMULATORS) == {"hallmark", "tumbledry", "uclean", "hipoink", "shopify-admin"}
    assert all(issubclass(cls, Simulator) and cls.name == name for name, cls in SIMULATORS.items())
