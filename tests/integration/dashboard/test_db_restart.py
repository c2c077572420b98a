"""Issue 11, defect 4: the dashboard through a PostgreSQL restart (a private server, never the shared one)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from storeflow.settings import Settings
from tests.integration.dashboard.conftest import serve
from tests.integration.pgserver import private_server

pytestmark = pytest.mark.integration


def test_dashboard_answers_503_during_an_outage_and_serves_again_right_after(
    make_settings: Callable[..., Settings],
) -> None:
    with private_server() as pg:
        settings = make_settings(db_url=pg.url, APP_ENVIRONMENT="test")
        with serve(settings, pg.url) as base, httpx.Client(base_url=base, timeout=5.0) as client:
            assert client.get("/dashboard/esl").status_code == 200  # the pool holds a connection now
            pg.stop()
            pg.start()
            assert client.get("/dashboard/esl").status_code == 200  # its dead connection is not handed out
            pg.stop()
            try:
                during = client.get("/dashboard/esl")  # within 5 s, or the client's timeout fails the test
            finally:
                pg.start()
            assert during.status_code == 503 and "database unavailable" in during.text
            assert client.get("/dashboard/esl").status_code == 200
