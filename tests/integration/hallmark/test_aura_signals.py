"""Every form in which Salesforce says "session expired" or "framework updated", produced by the simulator
(``session_signal`` / ``out_of_sync_signal``): the client logs in again or re-syncs, and no record is lost.

A module of its own: expiring the simulator's sessions also expires the module's saved login.
"""

from __future__ import annotations

from typing import Any

import pytest

from storeflow.db.connect import Database
from storeflow.settings import Settings
from tests.integration.hallmark.conftest import Portal, extract

pytestmark = pytest.mark.integration


def _orders(portal: Portal, count: int, skip: int) -> list[str]:
    return sorted(o for o, v in portal.sim.orders.items() if v.created is not None)[skip : skip + count]


def _warm(portal: Portal, settings: Settings, database: Database) -> dict[str, Any]:
    """One call with a session the portal accepts (logging in if an earlier test expired it)."""
    assert extract(settings, database, kind="orders", ids=_orders(portal, 1, skip=0)).status == "ok"
    return portal.state()


@pytest.mark.parametrize(
    "signal", ["event", "event_bare", "action_error", "guest_exception", "javascript", "login_page"]
)
def test_every_form_of_an_expired_session_logs_in_again_and_loses_no_record(
    portal: Portal, hm_settings: Any, with_session: Any, database: Database, signal: str
) -> None:
    settings = hm_settings()
    with_session(settings)
    before = _warm(portal, settings, database)
    portal.tune(session_signal=signal, invalidate_after=1)  # the second Aura call finds the session gone
    ids = _orders(portal, 3, skip=20)
    summary = extract(settings, database, kind="orders", ids=ids)
    state = portal.state()
    assert (summary.status, summary.downloaded, summary.failed, summary.logins) == ("ok", 3, 0, 1)
    assert state["invalid_session"] > before["invalid_session"] and state["logins"] == before["logins"] + 1
    files = sorted(p.stem.removeprefix("order_") for p in settings.OUTPUT_DIRECTORY.rglob("order_*.json"))
    assert set(ids) <= set(files)


@pytest.mark.parametrize("signal", ["event", "exception_message", "javascript", "warning"])
def test_every_form_of_a_framework_update_resyncs_and_loses_no_record(
    portal: Portal, hm_settings: Any, with_session: Any, database: Database, signal: str
) -> None:
    settings = hm_settings()
    with_session(settings)
    before = _warm(portal, settings, database)
    portal.tune(out_of_sync_signal=signal, rotate_fwuid_after=1)
    summary = extract(settings, database, kind="orders", ids=_orders(portal, 3, skip=30))
    state = portal.state()
    assert (summary.status, summary.downloaded, summary.failed, summary.logins) == ("ok", 3, 0, 0)
    assert state["fwuid"] != before["fwuid"] and state["out_of_sync"] > before["out_of_sync"]
