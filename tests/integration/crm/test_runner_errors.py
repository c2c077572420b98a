"""The CRM runner does not swallow errors it carries on past: it logs them, redacted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from storeflow.browser import SessionVault
from storeflow.crm.runner import _session_check
from storeflow.db.connect import Database
from storeflow.db.pool import PoolConfig
from storeflow.settings import CrmStore

pytestmark = pytest.mark.integration


def test_a_session_check_the_database_cannot_take_is_logged_and_the_run_goes_on(
    make_settings: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings()
    store = CrmStore(crm="td", code="a668", name="Uttam Nagar", username_env="TD_U", password_env="TD_P")
    gone = Database(
        "postgresql://ops:hunter2-secret@127.0.0.1:1/none",
        kind="test",
        pool_config=PoolConfig(connect_timeout=2, wait_timeout=0.2, reconnect_timeout=0.5),
    )
    try:
        _session_check(gone, SessionVault(settings.config.crm.profiles_dir), store, True, "probe ok")  # does not raise
    finally:
        gone.close()
    messages = [r.getMessage() for r in caplog.records if "session check not recorded" in r.getMessage()]
    assert messages and messages[0].startswith("td_a668: session check not recorded: ")
    assert not any("hunter2-secret" in r.getMessage() for r in caplog.records)
