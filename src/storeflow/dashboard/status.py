"""Pure status policy: what colour a store x pipeline cell gets and what the operator must do.

No I/O here: `queries` gathers `Observation`s from the database, this module turns
each into a `Cell`, and the overview page and the alert engine both read the cells.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from storeflow.fmt import format_age

PIPELINES: dict[str, str] = {
    "hallmark": "Hallmark extraction",
    "crm_download": "CRM download",
    "crm_ingest": "CRM ingest",
    "esl": "ESL sync",
}

# worst first: the overview sorts and the alert engine fires on the first two
STATUSES: dict[str, tuple[int, str]] = {
    "bootstrap": (0, "needs bootstrap"),
    "failing": (1, "failing"),
    "lagging": (2, "lagging"),
    "stale": (3, "stale"),
    "running": (4, "running"),
    "never": (5, "no runs yet"),
    "ok": (6, "ok"),
}

# The commands the pipelines document; one place to keep them in step with their CLIs.
COMMANDS: dict[str, str] = {
    "crm_bootstrap": "crm_download bootstrap --crm {crm} --store {code}",
    "crm_download": "crm_download download --crm {crm} --store {code}",
    "crm_status": "crm_download status",
    "hallmark_login": "storeflow hallmark auth-test",
    "hallmark_resume": "storeflow hallmark --resume",
    "hallmark_bulk": "storeflow hallmark --bulk-orders --start-date YYYY-MM-DD --end-date YYYY-MM-DD",
    "esl_retry": "storeflow esl retry --store {code}",
    "esl_worker": "storeflow esl worker",
    "esl_status": "storeflow esl status",
}


def command(name: str, **values: str) -> str:
    return COMMANDS[name].format(**values)


@dataclass(frozen=True)
class Observation:
    """What the database says about one pipeline for one store."""

    pipeline: str
    store_key: str
    store_label: str
    crm: str = ""
    code: str = ""
    last_success_at: datetime | None = None
    last_attempt_at: datetime | None = None
    last_status: str | None = None
    last_error: str | None = None
    freshness: date | datetime | None = None
    pending: int = 0
    dead: int = 0
    oldest_pending_age: float | None = None


@dataclass(frozen=True)
class Cell:
    pipeline: str
    store_key: str
    store_label: str
    status: str
    reason: str
    action: str
    last_success_at: datetime | None
    freshness: date | datetime | None

    @property
    def severity(self) -> int:
        return STATUSES[self.status][0]

    @property
    def label(self) -> str:
        return STATUSES[self.status][1]

    @property
    def needs_operator(self) -> bool:
        return self.status in {"bootstrap", "failing", "lagging", "stale"}


def _stale(last_success: datetime | None, now: datetime, stale_after_hours: float) -> bool:
    return last_success is None or now - last_success > timedelta(hours=stale_after_hours)


def evaluate(obs: Observation, now: datetime, stale_after_hours: float, queue_age_alert_seconds: float) -> Cell:
    """The status, reason and operator action for one observation."""
    status, reason, action = _decide(obs, now, stale_after_hours, queue_age_alert_seconds)
    return Cell(
        obs.pipeline, obs.store_key, obs.store_label, status, reason, action, obs.last_success_at, obs.freshness
    )


def _decide(
    obs: Observation, now: datetime, stale_after_hours: float, queue_age_alert_seconds: float
) -> tuple[str, str, str]:
    if obs.pipeline == "esl":
        return _decide_esl(obs, now, stale_after_hours, queue_age_alert_seconds)
    crm = {"crm": obs.crm, "code": obs.code}
    error = (obs.last_error or "").strip()
    if obs.last_status is None and obs.last_success_at is None:
        if obs.pipeline == "hallmark":
            return "never", "no extraction run recorded", f"first run: `{command('hallmark_bulk')}`"
        what = "download" if obs.pipeline == "crm_download" else "ingestion"
        return "never", f"no {what} recorded", f"first run: `{command('crm_download', **crm)}`"
    if obs.last_status == "needs_bootstrap":
        if obs.pipeline == "hallmark":
            return "bootstrap", "the saved session is no longer valid", f"log in again: `{command('hallmark_login')}`"
        return "bootstrap", "the saved session expired", f"re-bootstrap: `{command('crm_bootstrap', **crm)}`"
    if obs.last_status in {"failed", "stopped"}:
        why = error or f"last run {obs.last_status}"
        if obs.pipeline == "hallmark":
            return "failing", why, f"check the error, then resume: `{command('hallmark_resume')}`"
        return "failing", why, f"check the error, then re-run: `{command('crm_download', **crm)}`"
    if obs.last_status == "running" and (obs.last_attempt_at is None or now - obs.last_attempt_at < timedelta(hours=6)):
        return "running", "a run is in progress", ""
    if _stale(obs.last_success_at, now, stale_after_hours):
        hours = f"{stale_after_hours:g} h"
        if obs.pipeline == "hallmark":
            return "stale", f"no successful run in {hours}", f"run: `{command('hallmark_bulk')}`"
        return "stale", f"no successful run in {hours}", f"run: `{command('crm_download', **crm)}`"
    return "ok", "", ""


def _decide_esl(
    obs: Observation, now: datetime, stale_after_hours: float, queue_age_alert_seconds: float
) -> tuple[str, str, str]:
    code = {"code": obs.code or obs.store_key}
    if obs.dead:
        return (
            "failing",
            f"{obs.dead} dead letter(s)",
            f"fix the cause, then press Retry on the ESL page or run `{command('esl_retry', **code)}`",
        )
    if obs.oldest_pending_age is not None and obs.oldest_pending_age > queue_age_alert_seconds:
        return (
            "lagging",
            f"{obs.pending} pending, oldest {format_age(obs.oldest_pending_age)}",
            f"check that a worker runs: `{command('esl_worker')}`",
        )
    if obs.last_success_at is None and obs.pending == 0:
        return "never", "no label synced yet", ""
    if obs.pending:
        return "running", f"{obs.pending} pending", ""
    return "ok", "", ""


def worst(cells: list[Cell]) -> list[Cell]:
    """Cells in the order the operator should look at them."""
    return sorted(cells, key=lambda c: (c.severity, c.store_label, c.pipeline))
