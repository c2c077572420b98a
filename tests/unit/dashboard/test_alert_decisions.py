"""The alert engine's de-duplication rules, as a table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storeflow.dashboard.alerts import AlertState, Condition, build_payload, conditions_from, decide
from storeflow.dashboard.status import Cell

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
COND = Condition("dead_letters:esl_S1", "dead_letters", "esl_S1", "2 dead letter(s)", "press Retry")


def state(active: bool, sent_minutes_ago: float | None) -> AlertState:
    sent = None if sent_minutes_ago is None else NOW - timedelta(minutes=sent_minutes_ago)
    return AlertState(COND.key, COND.kind, COND.store, active, COND.summary, sent)


@pytest.mark.parametrize(
    ("holds", "previous", "expected"),
    [
        # new condition: fire at once
        (True, None, ["firing"]),
        # holds, last message 10 min ago: nothing (one per interval)
        (True, state(True, 10), []),
        # holds, last message exactly one interval ago: reminder
        (True, state(True, 60), ["reminder"]),
        (True, state(True, 61), ["reminder"]),
        # holds but was never delivered (no channel answered): try again now
        (True, state(True, None), ["firing"]),
        # clears after a delivered alert: one resolved message
        (False, state(True, 5), ["resolved"]),
        # clears before any delivery: nothing to resolve
        (False, state(True, None), []),
        # already resolved and still clear: nothing
        (False, state(False, 5), []),
        (False, None, []),
        # flaps back within the interval of the last message: waits
        (True, state(False, 20), []),
        # comes back after the interval: fires again
        (True, state(False, 90), ["firing"]),
    ],
)
def test_one_alert_per_condition_per_interval(holds: bool, previous: AlertState | None, expected: list[str]) -> None:
    states = {COND.key: previous} if previous else {}
    decisions = decide([COND] if holds else [], states, NOW, HOUR)
    assert [d.action for d in decisions] == expected
    assert all(d.key == COND.key for d in decisions)


def test_each_condition_is_decided_on_its_own() -> None:
    other = Condition("queue_age:esl_S2", "queue_age", "esl_S2", "oldest 10 min")
    states = {COND.key: state(True, 5)}
    decisions = decide([COND, other], states, NOW, HOUR)
    assert [(d.action, d.key) for d in decisions] == [("firing", "queue_age:esl_S2")]


def cell(pipeline: str, store: str, status: str, reason: str = "why") -> Cell:
    return Cell(pipeline, store, store, status, reason, "do this", None, None)


@pytest.mark.parametrize(
    ("cells", "sessions", "keys"),
    [
        ([cell("crm_download", "td_a817", "bootstrap")], [], ["needs_bootstrap:td_a817"]),
        ([cell("crm_ingest", "td_a668", "failing")], [], ["store_failing:crm_ingest:td_a668"]),
        ([cell("hallmark", "hallmark", "failing")], [], ["store_failing:hallmark:hallmark"]),
        ([cell("esl", "esl_S1", "failing")], [], ["dead_letters:esl_S1"]),
        ([cell("esl", "esl_S1", "lagging")], [], ["queue_age:esl_S1"]),
        # stale, never, running and ok are shown on the overview but are not alerts
        ([cell("crm_ingest", "td_a668", s) for s in ("stale", "never", "running", "ok")], [], []),
        # an invalid session check alerts once, even when the overview already says bootstrap
        ([cell("crm_download", "td_a817", "bootstrap")], [("td_a817", "expired")], ["needs_bootstrap:td_a817"]),
        ([], [("hallmark", "redirected to /login")], ["needs_bootstrap:hallmark"]),
    ],
)
def test_conditions_from_overview(cells: list[Cell], sessions: list[tuple[str, str]], keys: list[str]) -> None:
    assert sorted(c.key for c in conditions_from(cells, sessions)) == sorted(keys)


def test_payload_says_what_and_what_to_do() -> None:
    (decision,) = decide([COND], {}, NOW, HOUR)
    payload = build_payload(decision, NOW, "http://127.0.0.1:8000/dashboard")
    assert payload["status"] == "firing"
    assert payload["title"] == "ESL dead letters (esl_S1)"
    assert payload["what_to_do"] == "press Retry"
    (resolved,) = decide([], {COND.key: state(True, 5)}, NOW, HOUR)
    assert build_payload(resolved, NOW)["title"] == "resolved: ESL dead letters (esl_S1)"
    assert build_payload(resolved, NOW)["status"] == "resolved"
