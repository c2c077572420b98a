from __future__ import annotations

from typing import Any

import pytest

from storeflow.alerts import send_alert
from storeflow.settings import load_settings

pytestmark = pytest.mark.integration


def test_alert_is_posted_to_the_webhook_with_secrets_masked(receiver: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = receiver
    settings = load_settings(env={"ALERT_WEBHOOK_URL": url})
    outcome = send_alert(settings, {"kind": "crm_failed", "store": "td_a668", "error": "password=abc123"})
    assert outcome == {"webhook": "sent"}
    assert received == [{"kind": "crm_failed", "store": "td_a668", "error": "password=***"}]


def test_unreachable_webhook_is_reported_not_raised() -> None:
    settings = load_settings(env={"ALERT_WEBHOOK_URL": "http://127.0.0.1:1/hook", "REQUEST_TIMEOUT_SECONDS": "2"})
    outcome = send_alert(settings, {"kind": "x"})
    assert outcome["webhook"].startswith("failed")
