"""Alert engine: which conditions hold, which messages to send, and the state that de-duplicates them.

`decide` is pure (table-tested): given the conditions that hold now and the stored
state of every condition seen before, it returns the messages to send. Rules:

- a new condition fires at once;
- a condition that holds is repeated (reminder) at most once per ``interval``;
- a condition that clears gets one "resolved" message;
- a condition that comes back within ``interval`` of its last message waits for
  the interval (one alert per condition per interval, even when it flaps);
- a message that no channel delivered is not counted as sent, so it is tried again.

`run_check` is the thin I/O around it (database state, `storeflow.alerts.send_alert`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from storeflow.alerts import send_alert
from storeflow.logs import get_logger, redact_value

if TYPE_CHECKING:
    import psycopg

    from storeflow.dashboard.status import Cell
    from storeflow.settings import Settings

log = get_logger("web")

KINDS: dict[str, str] = {
    "store_failing": "store failing",
    "needs_bootstrap": "session needs bootstrap",
    "dead_letters": "ESL dead letters",
    "queue_age": "ESL queue too old",
}


@dataclass(frozen=True)
class Condition:
    """Something wrong right now; ``key`` is stable across checks."""

    key: str
    kind: str
    store: str | None
    summary: str
    action: str = ""


@dataclass(frozen=True)
class AlertState:
    key: str
    kind: str
    store: str | None
    active: bool
    summary: str
    last_sent_at: datetime | None


@dataclass(frozen=True)
class Decision:
    action: str  # firing | reminder | resolved
    key: str
    kind: str
    store: str | None
    summary: str
    operator_action: str = ""


def decide(
    conditions: Iterable[Condition],
    states: Mapping[str, AlertState],
    now: datetime,
    interval: timedelta,
) -> list[Decision]:
    """The messages to send now (see the module docstring for the rules)."""
    out: list[Decision] = []
    holding = {c.key: c for c in conditions}
    for key, cond in sorted(holding.items()):
        state = states.get(key)
        recently = state is not None and state.last_sent_at is not None and now - state.last_sent_at < interval
        if state is None or not state.active:
            if not recently:
                out.append(Decision("firing", key, cond.kind, cond.store, cond.summary, cond.action))
        elif state.last_sent_at is None:
            out.append(Decision("firing", key, cond.kind, cond.store, cond.summary, cond.action))
        elif not recently:
            out.append(Decision("reminder", key, cond.kind, cond.store, cond.summary, cond.action))
    for key, state in sorted(states.items()):
        if state.active and key not in holding and state.last_sent_at is not None:
            out.append(Decision("resolved", key, state.kind, state.store, state.summary))
    return out


def conditions_from(cells: Iterable[Cell], invalid_sessions: Iterable[tuple[str, str]] = ()) -> list[Condition]:
    """Alert conditions from the overview cells, plus sessions whose last check failed."""
    found: dict[str, Condition] = {}
    for cell in cells:
        if cell.pipeline == "esl":
            if cell.status == "failing":
                key = f"dead_letters:{cell.store_key}"
                found[key] = Condition(key, "dead_letters", cell.store_key, cell.reason, cell.action)
            elif cell.status == "lagging":
                key = f"queue_age:{cell.store_key}"
                found[key] = Condition(key, "queue_age", cell.store_key, cell.reason, cell.action)
        elif cell.status == "bootstrap":
            key = f"needs_bootstrap:{cell.store_key}"
            found[key] = Condition(key, "needs_bootstrap", cell.store_key, cell.reason, cell.action)
        elif cell.status == "failing":
            key = f"store_failing:{cell.pipeline}:{cell.store_key}"
            summary = f"{cell.pipeline}: {cell.reason}"
            found[key] = Condition(key, "store_failing", cell.store_key, summary, cell.action)
    for session_key, detail in invalid_sessions:
        key = f"needs_bootstrap:{session_key}"
        if key not in found:
            found[key] = Condition(key, "needs_bootstrap", session_key, detail or "session check failed")
    return list(found.values())


def build_payload(decision: Decision, now: datetime, dashboard_url: str | None = None) -> dict[str, Any]:
    """The JSON body of one alert message (also the mail body)."""
    what = KINDS.get(decision.kind, decision.kind)
    verb = {"firing": "", "reminder": "still: ", "resolved": "resolved: "}.get(decision.action, "")
    where = f" ({decision.store})" if decision.store else ""
    payload: dict[str, Any] = {
        "source": "storeflow",
        "status": "resolved" if decision.action == "resolved" else "firing",
        "action": decision.action,
        "kind": decision.kind,
        "condition": decision.key,
        "store": decision.store,
        "title": f"{verb}{what}{where}",
        "summary": decision.summary,
        "what_to_do": decision.operator_action,
        "at": now.isoformat(),
    }
    if dashboard_url:
        payload["dashboard"] = dashboard_url
    return payload


def sample_payload(now: datetime, dashboard_url: str | None = None) -> dict[str, Any]:
    """The message `storeflow alerts test` sends."""
    decision = Decision(
        "firing",
        "test:sample",
        "test",
        "td_a817",
        "this is a test alert from `storeflow alerts test`; no action needed",
        "nothing: if you read this, alert delivery works",
    )
    payload = build_payload(decision, now, dashboard_url)
    payload["title"] = "storeflow test alert"
    payload["test"] = True
    return payload


# ---------------------------------------------------------------- I/O

LOAD_STATES = """
SELECT condition_key, kind, store, active, summary, last_sent_at FROM dashboard_alert_state
"""

UPSERT_SEEN = """
INSERT INTO dashboard_alert_state (condition_key, kind, store, active, summary, first_seen_at, last_seen_at)
VALUES (%(key)s, %(kind)s, %(store)s, true, %(summary)s, %(now)s, %(now)s)
ON CONFLICT (condition_key) DO UPDATE SET
    kind = EXCLUDED.kind, store = EXCLUDED.store, summary = EXCLUDED.summary, last_seen_at = EXCLUDED.last_seen_at,
    first_seen_at = CASE WHEN dashboard_alert_state.active THEN dashboard_alert_state.first_seen_at
                         ELSE EXCLUDED.first_seen_at END,
    active = true, resolved_at = NULL
"""

MARK_SENT = "UPDATE dashboard_alert_state SET last_sent_at = %(now)s WHERE condition_key = %(key)s"

MARK_RESOLVED = """
UPDATE dashboard_alert_state SET active = false, resolved_at = %(now)s WHERE condition_key = ANY(%(keys)s)
"""

LOG_MESSAGE = """
INSERT INTO dashboard_alert_log (condition_key, action, sent_at, payload, outcome)
VALUES (%(key)s, %(action)s, %(now)s, %(payload)s, %(outcome)s)
"""

# one alert check at a time across processes: "storeflow-alerts" as a stable number
CHECK_LOCK_KEY = 0x5F0A1E27


@dataclass
class CheckReport:
    conditions: list[Condition]
    decisions: list[Decision]
    outcomes: list[dict[str, str]]

    @property
    def delivered(self) -> int:
        return sum(1 for o in self.outcomes if "sent" in o.values())


Sender = Callable[["Settings", dict[str, Any]], dict[str, str]]


def load_states(conn: psycopg.Connection[Any]) -> dict[str, AlertState]:
    rows = conn.execute(LOAD_STATES).fetchall()
    return {
        r["condition_key"]: AlertState(
            r["condition_key"], r["kind"], r["store"], r["active"], r["summary"], r["last_sent_at"]
        )
        for r in rows
    }


def run_check(
    settings: Settings,
    conn: psycopg.Connection[Any],
    now: datetime | None = None,
    send: Sender = send_alert,
) -> CheckReport:
    """Evaluate every condition once, send what `decide` says, and record the state (one transaction)."""
    from storeflow.dashboard.queries import invalid_sessions, overview_cells

    now = now or datetime.now(UTC)
    interval = timedelta(seconds=settings.config.dashboard.alert_interval_seconds)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (CHECK_LOCK_KEY,))
        cells = overview_cells(conn, settings, now)
        conditions = conditions_from(cells, invalid_sessions(conn))
        states = load_states(conn)
        decisions = decide(conditions, states, now, interval)
        for cond in conditions:
            conn.execute(UPSERT_SEEN, {"key": cond.key, "kind": cond.kind, "store": cond.store,
                                       "summary": cond.summary, "now": now})  # fmt: skip
        holding = {c.key for c in conditions}
        cleared = [k for k, s in states.items() if s.active and k not in holding]
        outcomes: list[dict[str, str]] = []
        url = dashboard_url(settings)
        for decision in decisions:
            payload = redact_value(build_payload(decision, now, url))
            outcome = redact_value(send(settings, payload))
            outcomes.append(outcome)
            conn.execute(LOG_MESSAGE, {"key": decision.key, "action": decision.action, "now": now,
                                       "payload": Jsonb(payload), "outcome": Jsonb(outcome)})  # fmt: skip
            if "sent" in outcome.values():
                conn.execute(MARK_SENT, {"key": decision.key, "now": now})
            elif decision.action == "resolved":
                cleared.remove(decision.key)  # keep it active so the resolved message is tried again
            log.info("alert %s %s: %s", decision.action, decision.key, outcome, event="alert")
        if cleared:
            conn.execute(MARK_RESOLVED, {"keys": cleared, "now": now})
    return CheckReport(conditions, decisions, outcomes)


def preview(settings: Settings, conn: psycopg.Connection[Any], now: datetime | None = None) -> CheckReport:
    """What `run_check` would send now, without sending or recording anything."""
    from storeflow.dashboard.queries import invalid_sessions, overview_cells

    now = now or datetime.now(UTC)
    interval = timedelta(seconds=settings.config.dashboard.alert_interval_seconds)
    conditions = conditions_from(overview_cells(conn, settings, now), invalid_sessions(conn))
    decisions = decide(conditions, load_states(conn), now, interval)
    return CheckReport(conditions, decisions, [{} for _ in decisions])


def record_test(conn: psycopg.Connection[Any], payload: dict[str, Any], outcome: dict[str, str]) -> None:
    with conn.transaction():
        conn.execute(LOG_MESSAGE, {"key": "test:sample", "action": "test", "now": datetime.now(UTC),
                                   "payload": Jsonb(redact_value(payload)),
                                   "outcome": Jsonb(redact_value(outcome))})  # fmt: skip


def dashboard_url(settings: Settings) -> str:
    return settings.APP_BASE_URL.rstrip("/") + "/dashboard"
