"""`crm_download status`: last success, last failure and session age per configured store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from storeflow.browser import SessionVault

if TYPE_CHECKING:
    from storeflow.db.connect import Database
    from storeflow.settings import Settings

COLUMNS = ("store", "last_success", "ingested_at", "last_failure", "why", "session_age")
LAST_SUCCESS = """
SELECT from_date, to_date, finished_at FROM ingest_audit
WHERE crm = %s AND store = %s AND status IN ('ok', 'empty', 'duplicate')
ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT 1
"""
LAST_FAILURE = """
SELECT status, error, finished_at FROM ingest_audit
WHERE crm = %s AND store = %s AND status IN ('failed', 'needs_bootstrap')
ORDER BY finished_at DESC NULLS LAST, id DESC LIMIT 1
"""


def human_age(seconds: float | None) -> str:
    if seconds is None:
        return "no session (bootstrap needed)"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def store_status(settings: Settings, db: Database) -> list[tuple[str, str, str, str, str, str]]:
    vault = SessionVault(settings.config.crm.profiles_dir)
    rows = []
    with db.transaction() as conn:
        for store in settings.config.crm.stores:
            ok = conn.execute(LAST_SUCCESS, (store.crm, store.code)).fetchone()
            bad = conn.execute(LAST_FAILURE, (store.crm, store.code)).fetchone()
            rows.append(
                (
                    store.key + ("" if store.enabled else " (disabled)"),
                    f"{ok['from_date']}..{ok['to_date']}" if ok else "never",
                    f"{ok['finished_at']:%Y-%m-%d %H:%M}" if ok and ok["finished_at"] else "-",
                    f"{bad['finished_at']:%Y-%m-%d %H:%M} {bad['status']}" if bad and bad["finished_at"] else "-",
                    (bad["error"] or "")[:100] if bad else "-",
                    human_age(vault.age_seconds(store.key)),
                )
            )
    return rows
