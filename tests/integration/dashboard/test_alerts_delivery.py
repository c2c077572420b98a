"""`storeflow alerts test|check` against a local webhook receiver and a real database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner

from storeflow.dashboard.cli import alerts_app
from storeflow.settings import Settings
from tests.integration.dashboard.conftest import seed

pytestmark = pytest.mark.integration


def test_alerts_test_sends_a_sample(
    dash_settings: Callable[..., Settings], receiver: tuple[str, list[dict[str, Any]]], conn: psycopg.Connection[Any]
) -> None:
    url, received = receiver
    dash_settings(ALERT_WEBHOOK_URL=url)
    result = CliRunner().invoke(alerts_app, ["test"])
    assert result.exit_code == 0, result.output
    assert "webhook: sent" in result.output
    assert len(received) == 1 and received[0]["test"] is True and received[0]["title"] == "storeflow test alert"
    logged = conn.execute("SELECT action, outcome FROM dashboard_alert_log").fetchall()
    assert [(r["action"], r["outcome"]) for r in logged] == [("test", {"webhook": "sent"})]


def test_alerts_without_a_channel_say_how_to_configure(dash_settings: Callable[..., Settings]) -> None:
    dash_settings()
    result = CliRunner().invoke(alerts_app, ["check"])
    assert result.exit_code == 2
    assert "ALERT_WEBHOOK_URL" in result.output


def test_check_fires_once_per_interval_then_resolves(
    dash_settings: Callable[..., Settings], receiver: tuple[str, list[dict[str, Any]]], conn: psycopg.Connection[Any]
) -> None:
    url, received = receiver
    settings = dash_settings(ALERT_WEBHOOK_URL=url)
    seeded = seed(conn, settings.config.crm.profiles_dir, settings.SESSION_FILE)
    runner = CliRunner()

    dry = runner.invoke(alerts_app, ["check", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would send firing    needs_bootstrap:td_a817" in dry.output
    assert received == []
    assert conn.execute("SELECT count(*) AS n FROM dashboard_alert_state").fetchone() == {"n": 0}

    first = runner.invoke(alerts_app, ["check"])
    assert first.exit_code == 0, first.output
    fired = {body["condition"]: body for body in received}
    assert set(fired) == {
        "needs_bootstrap:td_a817",
        "store_failing:crm_ingest:uc_UC567",
        "store_failing:hallmark:hallmark",
        "dead_letters:esl_S1",
        "queue_age:esl_S2",
    }
    assert fired["needs_bootstrap:td_a817"]["what_to_do"] == (
        "re-bootstrap: `crm_download bootstrap --crm td --store a817`"
    )
    assert all(body["status"] == "firing" for body in received)

    # the same conditions within the interval: nothing new
    received.clear()
    again = runner.invoke(alerts_app, ["check"])
    assert again.exit_code == 0, again.output
    assert received == []

    # the dead letter is retried and the queue drained: two resolved messages, once
    conn.execute("UPDATE sync_queue SET state = 'succeeded', finished_at = now() WHERE id = %s", (seeded["dead_id"],))
    conn.execute("UPDATE sync_queue SET state = 'succeeded', finished_at = now() WHERE state = 'pending'")
    conn.commit()
    runner.invoke(alerts_app, ["check"])
    assert sorted((b["status"], b["condition"]) for b in received) == [
        ("resolved", "dead_letters:esl_S1"),
        ("resolved", "queue_age:esl_S2"),
    ]
    received.clear()
    runner.invoke(alerts_app, ["check"])
    assert received == []

    # an interval later the conditions still holding are repeated as reminders
    conn.execute("UPDATE dashboard_alert_state SET last_sent_at = last_sent_at - %s", (timedelta(hours=2),))
    conn.commit()
    runner.invoke(alerts_app, ["check"])
    assert sorted(b["action"] for b in received) == ["reminder"] * 3
    rows = conn.execute("SELECT action, count(*) AS n FROM dashboard_alert_log GROUP BY 1 ORDER BY 1").fetchall()
    assert {r["action"]: r["n"] for r in rows} == {"firing": 5, "resolved": 2, "reminder": 3}
