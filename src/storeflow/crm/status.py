"""`crm_download status`: last success, last failure and session age per configured store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from storeflow.browser import SessionVault
from storeflow.crm.store import last_failure, last_success
from storeflow.fmt import format_age

if TYPE_CHECKING:
    from storeflow.db.connect import Database
    from storeflow.settings import Settings

COLUMNS = ("store", "last_success", "ingested_at", "last_failure", "why", "session_age")


def store_status(settings: Settings, db: Database) -> list[tuple[str, str, str, str, str, str]]:
    vault = SessionVault(settings.config.crm.profiles_dir)
    rows = []
    with db.transaction() as conn:
        for store in settings.config.crm.stores:
            ok = last_success(conn, store.crm, store.code)
            bad = last_failure(conn, store.crm, store.code)
            rows.append(
                (
                    store.key + ("" if store.enabled else " (disabled)"),
                    f"{ok['from_date']}..{ok['to_date']}" if ok else "never",
                    f"{ok['finished_at']:%Y-%m-%d %H:%M}" if ok and ok["finished_at"] else "-",
                    f"{bad['finished_at']:%Y-%m-%d %H:%M} {bad['status']}" if bad and bad["finished_at"] else "-",
                    (bad["error"] or "")[:100] if bad else "-",
                    format_age(vault.age_seconds(store.key), "no session (bootstrap needed)"),
                )
            )
    return rows
