"""The Hallmark step of `storeflow demo` against a running simulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from storeflow.db.connect import Database
from storeflow.demo import DemoContext
from storeflow.hallmark.demo import run_demo
from tests.integration.hallmark.conftest import Portal

pytestmark = pytest.mark.integration


def test_demo_step_matches_the_truth(portal: Portal, hm_settings: Any, database: Database, tmp_path: Path) -> None:
    settings = hm_settings()
    result = run_demo(DemoContext(settings, database, portal.host, tmp_path, Console(file=None, quiet=True)))
    figures = dict(result.figures)
    assert result.ok, (result.note, figures)
    truth = portal.truth("all", "2025-03-01", "2025-03-14")
    assert figures["orders (portal truth)"] == f"{truth['orders']} ({truth['orders']})"
    assert figures["billing documents (truth)"].startswith(str(truth["billing_documents"]))
    assert figures["logins"].startswith("1 (MFA webhook)")
