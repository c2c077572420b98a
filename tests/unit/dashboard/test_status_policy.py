"""Overview cell policy, charts and login helpers: pure functions, tables of cases."""

from __future__ import annotations

import base64
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from storeflow.dashboard import auth, charts
from storeflow.dashboard.queries import LatencyHistogram
from storeflow.dashboard.status import Observation, evaluate, format_age, worst
from storeflow.settings import load_settings

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def ago(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def crm(**kw: object) -> Observation:
    return Observation("crm_download", "td_a817", "Kirti Nagar", crm="td", code="a817", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("obs", "status", "action"),
    [
        (crm(), "never", "first run: `crm_download download --crm td --store a817`"),
        (crm(last_status="ok", last_success_at=ago(1)), "ok", ""),
        (crm(last_status="ok", last_success_at=ago(30)), "stale", "run: `crm_download download --crm td --store a817`"),
        (
            crm(last_status="needs_bootstrap", last_success_at=ago(1)),
            "bootstrap",
            "re-bootstrap: `crm_download bootstrap --crm td --store a817`",
        ),
        (
            crm(last_status="failed", last_error="corrupt file", last_success_at=ago(1)),
            "failing",
            "check the error, then re-run: `crm_download download --crm td --store a817`",
        ),
        (crm(last_status="running", last_attempt_at=ago(0.1), last_success_at=ago(30)), "running", ""),
        # a run "running" for 7 hours has died: judged by its last success
        (crm(last_status="running", last_attempt_at=ago(7), last_success_at=ago(30)), "stale", None),
        (Observation("hallmark", "hallmark", "Hallmark", last_status="stopped"), "failing", None),
        (Observation("hallmark", "hallmark", "Hallmark", last_status="needs_bootstrap"), "bootstrap", None),
        (Observation("esl", "esl_S1", "shop", code="S1", dead=2, pending=3), "failing", None),
        (Observation("esl", "esl_S1", "shop", code="S1", pending=3, oldest_pending_age=600), "lagging", None),
        (Observation("esl", "esl_S1", "shop", code="S1", pending=3, oldest_pending_age=10), "running", None),
        (Observation("esl", "esl_S1", "shop", code="S1"), "never", None),
        (Observation("esl", "esl_S1", "shop", code="S1", last_success_at=ago(50)), "ok", None),
    ],
)
def test_cell_status_and_action(obs: Observation, status: str, action: str | None) -> None:
    cell = evaluate(obs, NOW, stale_after_hours=24, queue_age_alert_seconds=300)
    assert cell.status == status
    if action is not None:
        assert cell.action == action


def test_worst_first() -> None:
    cells = [
        evaluate(crm(last_status="ok", last_success_at=ago(1)), NOW, 24, 300),
        evaluate(crm(last_status="needs_bootstrap"), NOW, 24, 300),
        evaluate(crm(last_status="failed"), NOW, 24, 300),
    ]
    assert [c.status for c in worst(cells)] == ["bootstrap", "failing", "ok"]


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "—"), (5, "5 s"), (89, "89 s"), (600, "10 min"), (7200, "2.0 h"), (259200, "3.0 d")]
)
def test_format_age(seconds: float | None, text: str) -> None:
    assert format_age(seconds) == text


def test_cumulative_histogram_becomes_bars_with_overflow() -> None:
    # latencies 0.01, 0.05, 0.2, 3.0, 1000.0 s: cumulative per edge as PostgreSQL counts them
    hist = LatencyHistogram((0.05, 1.0, 10.0), [2, 3, 4], count=5, total_seconds=1003.26)
    assert dict(hist.bars()) == {"≤50ms": 2, "≤1s": 1, "≤10s": 1, ">10s": 1}


@pytest.mark.parametrize(("value", "top"), [(0, 1), (0.7, 1), (3, 5), (42, 50), (120, 200), (1000, 1000), (2300, 2500)])
def test_nice_axis_maximum(value: float, top: float) -> None:
    assert charts.nice_max(value) == top


def test_charts_escape_labels_and_draw_every_point() -> None:
    svg = charts.line_chart({"<td_a668>": [(date(2026, 11, 1), 10.0), (date(2026, 11, 2), 20.0)]})
    assert "&lt;td_a668&gt;" in svg and "<td_a668>" not in svg
    assert svg.count("<circle") == 2
    assert charts.bar_chart([("a", 1), ("b", 0)]).count('<rect class="bar"') == 2
    assert charts.line_chart({}) == "" and charts.bar_chart([]) == ""


@pytest.mark.parametrize(
    ("host", "required"),
    [("127.0.0.1", False), ("localhost", False), ("::1", False), ("0.0.0.0", True), ("10.0.0.5", True)],
)
def test_login_required_unless_loopback(host: str, required: bool) -> None:
    assert auth.login_required(host, {}) is required
    assert auth.login_required(host, {"x-forwarded-for": "203.0.113.9"}) is True  # proxied: always log in


def test_cookie_round_trip_tamper_and_expiry(tmp_path: Path) -> None:
    home = str(tmp_path)  # the server key ($STOREFLOW_HOME/web/server.key) signs cookies
    settings = load_settings(
        env={"DASHBOARD_USERNAME": "ops", "DASHBOARD_PASSWORD": "s3cret-pass", "STOREFLOW_HOME": home}
    )
    cookie = auth.issue_cookie(settings, "ops", now=1000.0)
    assert auth.read_cookie(settings, cookie, now=1001.0) == "ops"
    assert auth.read_cookie(settings, cookie.replace("ops|", "root|"), now=1001.0) is None
    assert auth.read_cookie(settings, cookie, now=1000.0 + auth.MAX_AGE_SECONDS + 1) is None
    other = load_settings(
        env={"DASHBOARD_USERNAME": "ops", "DASHBOARD_PASSWORD": "changed-pass", "STOREFLOW_HOME": home}
    )
    assert auth.read_cookie(other, cookie, now=1001.0) is None
    basic = "Basic " + base64.b64encode(b"ops:s3cret-pass").decode()
    assert auth.read_basic(settings, basic) == "ops"
    assert auth.read_basic(settings, "Basic " + base64.b64encode(b"ops:wrong").decode()) is None
    assert auth.check_csrf(settings, cookie, auth.csrf_token(settings, cookie))
    assert not auth.check_csrf(settings, cookie, "0" * 32)


def test_no_password_means_no_login() -> None:
    settings = load_settings(env={})
    assert not auth.check_credentials(settings, "admin", "")
    assert not auth.check_credentials(settings, "admin", "anything")


def test_login_throttle_blocks_after_repeated_failures_per_client() -> None:
    throttle = auth.LoginThrottle(limit=3, window=60)
    for t in (0.0, 1.0, 2.0):
        assert not throttle.blocked("10.0.0.1", now=t)
        throttle.failed("10.0.0.1", now=t)
    assert throttle.blocked("10.0.0.1", now=3.0)
    assert not throttle.blocked("10.0.0.2", now=3.0)  # other clients unaffected
    assert not throttle.blocked("10.0.0.1", now=61.5)  # the first failure left the window
    throttle.failed("10.0.0.1", now=62.0)
    throttle.succeeded("10.0.0.1")
    assert not throttle.blocked("10.0.0.1", now=62.0)
