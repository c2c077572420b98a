"""Runs bootstrap and download for a set of stores, concurrently, each isolated.

One browser, one context per store, at most ``crm.concurrency`` stores at once. Per
store: advisory lock -> window -> session probe (auto re-login when no OTP is
needed) -> download -> ingest (one transaction per file) -> retention. A store's
failure never stops the others; the exit code summarises the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from storeflow.alerts import send_alert
from storeflow.browser import SessionVault, has_display, launch
from storeflow.crm.files import expired_files
from storeflow.crm.ingest import ingest_file
from storeflow.crm.portals import (
    REPORT_TYPES,
    Downloaded,
    DownloadError,
    OtpSource,
    PortalClient,
    PortalConfig,
    SessionExpired,
    StorageState,
    check_mode,
    client_for,
)
from storeflow.crm.progress import Progress
from storeflow.crm.store import (
    INGEST_FAILED,
    INGEST_PROBLEMS,
    INGEST_SKIPPED,
    NEEDS_BOOTSTRAP,
    FileInfo,
    IngestResult,
    last_success_end,
    record_audit,
    try_lock_store,
    unlock_store,
)
from storeflow.crm.windows import Window, auto_window, requested_window
from storeflow.db.pool import is_connection_lost, lost_database
from storeflow.errors import (
    EXIT_FAILED,
    EXIT_NEEDS_BOOTSTRAP,
    EXIT_OK,
    EXIT_SKIPPED,
    EXIT_UNAVAILABLE,
    ConfigError,
    NeedsBootstrapError,
    StoreflowError,
)
from storeflow.logs import get_logger, redact_error, register_secrets
from storeflow.otp import fresh_code, read_code, webhook_answer

if TYPE_CHECKING:
    from playwright.async_api import Browser, Playwright

    from storeflow.db.connect import Database
    from storeflow.settings import CrmStore, Settings

log = get_logger("crm")


UPSERT_SESSION_CHECK = """
INSERT INTO session_checks (session_key, pipeline, store, path, saved_at, checked_at, valid, detail)
VALUES (%s, 'crm', %s, %s, %s, now(), %s, %s)
ON CONFLICT (session_key) DO UPDATE SET path = EXCLUDED.path, saved_at = EXCLUDED.saved_at,
    checked_at = now(), valid = EXCLUDED.valid, detail = EXCLUDED.detail
"""
INSERT_RUN = "INSERT INTO pipeline_runs (run_id, pipeline, command, store) VALUES (%s, 'crm', %s, %s)"
FINISH_RUN = "UPDATE pipeline_runs SET finished_at = now(), status = %s, summary = %s, error = %s WHERE run_id = %s"


def select_stores(settings: Settings, crm: str, store: str) -> list[CrmStore]:
    """The enabled stores matching ``--crm td|uc|all`` and ``--store CODE|all``."""
    crm = crm.lower()
    if crm not in {"td", "uc", "all"}:
        raise ConfigError(f"--crm must be td, uc or all (got {crm!r})")
    configured = settings.config.crm.stores
    if not configured:
        where = settings.config_path or "no TOML file found"
        raise ConfigError(f"no [[crm.stores]] configured ({where}); see storeflow.example.toml")
    chosen = [s for s in configured if s.enabled and (crm == "all" or s.crm == crm)]
    if store.lower() != "all":
        chosen = [s for s in chosen if s.code.lower() == store.lower() or s.key == store.lower()]
        if not chosen:
            known = ", ".join(s.key for s in configured if crm in ("all", s.crm))
            raise ConfigError(f"no enabled store {store!r} for --crm {crm} (configured: {known or 'none'})")
    if not chosen:
        raise ConfigError(f"no enabled stores for --crm {crm}")
    return chosen


def check_stores(settings: Settings, stores: list[CrmStore]) -> None:
    """Fail before any work (exit 2) on a bad mode or a credentials variable that is not set."""
    problems = []
    for store in stores:
        try:
            check_mode(store)
        except ConfigError as exc:
            problems.append(str(exc))
        missing = [n for n in (store.username_env, store.password_env) if not settings.env_value(n)]
        if missing:
            problems.append(f"store {store.key}: set {' and '.join(missing)} (environment or .env)")
    if problems:
        raise ConfigError("; ".join(problems))


@dataclass(frozen=True)
class CrmRunConfig:
    """What a CRM run reads from the settings: built once by the entry points, read by everything below."""

    portal: PortalConfig
    profiles_dir: Path
    download_dir: Path
    concurrency: int = 4
    overlap_days: int = 2
    backfill_days: int = 30
    retention_days: int = 0
    download_timeout: float = 60.0
    browser: str | None = None  # STOREFLOW_BROWSER
    browser_channel: str | None = None
    headless: bool = True  # HEADLESS_MODE
    otp_webhook_timeout: float = 300.0  # MFA_WEBHOOK_TIMEOUT_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings, stores: Iterable[CrmStore] = ()) -> CrmRunConfig:
        crm = settings.config.crm
        return cls(
            portal=PortalConfig.from_settings(settings, stores),
            profiles_dir=crm.profiles_dir,
            download_dir=crm.download_dir,
            concurrency=crm.concurrency,
            overlap_days=crm.overlap_days,
            backfill_days=crm.backfill_days,
            retention_days=crm.retention_days,
            download_timeout=crm.download_timeout_seconds,
            browser=settings.STOREFLOW_BROWSER,
            browser_channel=crm.browser_channel,
            headless=settings.HEADLESS_MODE,
            otp_webhook_timeout=settings.MFA_WEBHOOK_TIMEOUT_SECONDS,
        )


@dataclass
class StoreOutcome:
    key: str
    status: str  # ok | duplicate | empty | failed | needs_bootstrap | skipped
    window: Window | None = None
    file: str | None = None
    inserted: int = 0
    updated: int = 0
    rejected: int = 0
    error: str | None = None
    seconds: float = 0.0
    unavailable: bool = False  # failed because the database was lost (exit 4)

    def as_dict(self) -> dict[str, Any]:
        return {
            "store": self.key,
            "status": self.status,
            "from": self.window.start.isoformat() if self.window else None,
            "to": self.window.end.isoformat() if self.window else None,
            "file": self.file,
            "inserted": self.inserted,
            "updated": self.updated,
            "rejected": self.rejected,
            "error": self.error,
            "seconds": round(self.seconds, 2),
        }


@dataclass
class RunSummary:
    run_id: uuid.UUID
    outcomes: list[StoreOutcome] = field(default_factory=list)
    database_lost: bool = False  # the run's own bookkeeping could not be written

    @property
    def exit_code(self) -> int:
        """3 when a store needs bootstrap (a human must act), 4 when the database was lost,
        1 when a store failed, 6 when a store was skipped because another run holds its lock, else 0."""
        statuses = {o.status for o in self.outcomes}
        if "needs_bootstrap" in statuses:
            return EXIT_NEEDS_BOOTSTRAP
        if self.database_lost or any(o.unavailable for o in self.outcomes):
            return EXIT_UNAVAILABLE
        if "failed" in statuses:
            return EXIT_FAILED
        if "skipped" in statuses:
            return EXIT_SKIPPED
        return EXIT_OK


class BrowserHolder:
    """Launches Chromium on first need (API-only runs never start it); closed by its owner.

    Callers running at once (several stores of a run, or several jobs of a worker process) share the
    browser, each with its own context; the lock makes them share one launch. A browser that crashed or
    disconnected is replaced: the next `get` launches a fresh one.
    """

    def __init__(self, config: CrmRunConfig, headless: bool) -> None:
        self.config = config
        self.headless = headless
        self._pw: Playwright | None = None
        self._manager: Any = None
        self._browser: Browser | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> Browser:
        async with self._lock:
            if self._browser is not None and not self._browser.is_connected():
                log.warning("the browser disconnected: launching a new one", event="browser")
                await self._stop(quiet=True)
            if self._browser is None:
                from playwright.async_api import async_playwright

                self._manager = async_playwright()
                self._pw = await self._manager.start()
                assert self._pw is not None
                try:
                    self._browser = await launch(
                        self._pw,
                        self.config.browser,
                        headless=self.headless,
                        channel=self.config.browser_channel,
                    )
                except BaseException:
                    await self._stop(quiet=True)  # the next caller tries again from scratch
                    raise
            return self._browser

    async def close(self) -> None:
        async with self._lock:
            await self._stop(quiet=False)

    async def _stop(self, quiet: bool) -> None:
        """Close the browser and the Playwright driver; ``quiet``: a dead browser's errors are expected."""
        browser, manager = self._browser, self._manager
        self._browser, self._pw, self._manager = None, None, None
        try:
            if browser is not None:
                await browser.close()
        except Exception:
            if not quiet:
                raise
        finally:
            if manager is not None:
                try:
                    await manager.__aexit__(None, None, None)
                except Exception:
                    if not quiet:
                        raise


@contextlib.asynccontextmanager
async def portal_session(
    config: CrmRunConfig, headless: bool
) -> AsyncIterator[tuple[httpx.AsyncClient, BrowserHolder]]:
    holder = BrowserHolder(config, headless)
    async with httpx.AsyncClient(timeout=config.download_timeout) as http:
        try:
            yield http, holder
        finally:
            await holder.close()


def resolve_headless(config: CrmRunConfig, headless: bool | None, bootstrap: bool = False) -> bool:
    if headless is not None:
        return headless
    if bootstrap:
        return not has_display()
    return config.headless


async def otp_source(
    webhook_timeout: float,
    store: CrmStore,
    http: httpx.AsyncClient,
    given: str | None,
    interactive: bool,
    poll_seconds: float = 2.0,
) -> OtpSource:
    """Where a one-time code comes from: ``--otp``, else the store's OTP webhook (polled for up to
    ``webhook_timeout`` seconds, MFA_WEBHOOK_TIMEOUT_SECONDS), else stdin.

    Called before the login form is submitted: the webhook's current answer is remembered then, so the
    previous login's code it still serves is never typed into the new prompt.
    """
    asked_at = time.time()
    stale: str | None = None
    if not given and store.otp_webhook_url:
        stale = fresh_code(await _webhook_answer(http, store.otp_webhook_url), None, 0.0)

    async def fetch() -> str:
        if given:
            return given.strip()
        if store.otp_webhook_url:
            deadline = asyncio.get_running_loop().time() + webhook_timeout
            while True:
                code = fresh_code(await _webhook_answer(http, store.otp_webhook_url), stale, asked_at)
                if code:
                    register_secrets([code])
                    return code
                if asyncio.get_running_loop().time() > deadline:
                    raise StoreflowError(f"{store.key}: no new OTP from {store.otp_webhook_url} in time")
                await asyncio.sleep(poll_seconds)
        if not interactive:
            raise NeedsOtp(f"{store.key}: an OTP is required; run `crm_download bootstrap` on a terminal or pass --otp")
        code = (await asyncio.to_thread(read_code, f"OTP for {store.key} ({store.name}): ")).strip()
        if not code:
            raise NeedsOtp(f"{store.key}: no OTP given on stdin (pass --otp CODE or set otp_webhook_url)")
        register_secrets([code])
        return code

    return fetch


async def _webhook_answer(http: httpx.AsyncClient, url: str) -> Any:
    """The OTP webhook's answer; None also when it cannot be reached (the poll tries again)."""
    try:
        return await webhook_answer(http, url)
    except httpx.HTTPError:
        return None


class NeedsOtp(StoreflowError):
    pass


def bootstrap_command(store: CrmStore) -> str:
    return f"crm_download bootstrap --crm {store.crm} --store {store.code}"


# ---------------------------------------------------------------- bootstrap


async def run_bootstrap(
    settings: Settings,
    stores: list[CrmStore],
    otp: str | None,
    headless: bool | None,
    interactive: bool,
    db: Database | None = None,
) -> list[StoreOutcome]:
    """Log every store in (one at a time: a human may be typing codes) and save its storage state."""
    config = CrmRunConfig.from_settings(settings, stores)
    vault = SessionVault(config.profiles_dir)
    outcomes = []
    async with portal_session(config, resolve_headless(config, headless, bootstrap=True)) as (http, holder):
        for store in stores:
            slog = get_logger("auth", store.key)
            client = client_for(config.portal, store, http, holder.get)
            try:
                slog.info("logging in", event="bootstrap")
                state = await client.login(await otp_source(config.otp_webhook_timeout, store, http, otp, interactive))
                path = vault.save(store.key, state)
                slog.info("session saved to %s", path, event="bootstrap")
                outcomes.append(StoreOutcome(store.key, "ok", file=str(path)))
                _session_check(db, vault, store, True, "bootstrapped")
            except StoreflowError as exc:
                slog.error("bootstrap failed: %s", exc, event="bootstrap")
                outcomes.append(StoreOutcome(store.key, "failed", error=str(exc)))
    return outcomes


def _session_check(db: Database | None, vault: SessionVault, store: CrmStore, valid: bool, detail: str) -> None:
    if db is None:
        return
    path = vault.path(store.key)
    age = vault.age_seconds(store.key)
    saved = datetime.fromtimestamp(path.stat().st_mtime).astimezone() if age is not None else None
    try:
        with db.transaction() as conn:
            conn.execute(UPSERT_SESSION_CHECK, (store.key, store.code, str(path), saved, valid, detail))
    except Exception as exc:  # the dashboard's session row is a convenience: the run goes on without it
        log.warning("%s: session check not recorded: %s", store.key, _first_line(exc), event="session")


# ---------------------------------------------------------------- download


@dataclass
class DownloadOptions:
    start: str | None = None
    end: str | None = None
    headless: bool | None = None
    keep_files: bool = False
    today: date | None = None
    alert: bool = True
    command: str = "download"


async def run_download(
    settings: Settings,
    db: Database,
    stores: list[CrmStore],
    options: DownloadOptions,
    progress: Progress,
    portal: tuple[httpx.AsyncClient, BrowserHolder] | None = None,
) -> RunSummary:
    """Download and ingest every store; returns the summary (exit code, per-store outcomes).

    ``portal``: an HTTP client and browser holder the caller owns and keeps open (a worker process shares
    one across its CRM jobs); without it the run opens its own `portal_session` and closes it at the end.
    """
    config = CrmRunConfig.from_settings(settings, stores)
    today = options.today or date.today()
    requested = requested_window(options.start, options.end, today)
    summary = RunSummary(uuid.uuid4())
    try:
        with db.transaction() as conn:
            conn.execute(INSERT_RUN, (summary.run_id, options.command, ",".join(s.key for s in stores)))
    except Exception as exc:
        if is_connection_lost(exc):
            raise lost_database(exc, "starting the CRM run") from exc
        raise
    log.info("run %s: %d store(s)", summary.run_id, len(stores), event="start")
    semaphore = asyncio.Semaphore(config.concurrency)
    async with contextlib.AsyncExitStack() as stack:
        if portal is None:
            portal = await stack.enter_async_context(portal_session(config, resolve_headless(config, options.headless)))
        http, holder = portal

        async def one(store: CrmStore) -> StoreOutcome:
            async with semaphore:
                return await _run_store(
                    config, db, store, summary.run_id, requested, today, options, progress, http, holder
                )

        summary.outcomes = list(await asyncio.gather(*(one(s) for s in stores)))
    status = {
        EXIT_OK: "ok",
        EXIT_FAILED: "partial",
        EXIT_NEEDS_BOOTSTRAP: "partial",
        EXIT_SKIPPED: "ok",
        EXIT_UNAVAILABLE: "partial",
    }[summary.exit_code]
    if all(o.status in INGEST_PROBLEMS for o in summary.outcomes):
        status = "failed"
    failures = [o for o in summary.outcomes if o.status in INGEST_PROBLEMS]
    try:
        with db.transaction() as conn:
            conn.execute(
                FINISH_RUN,
                (
                    status,
                    json.dumps({"stores": [o.as_dict() for o in summary.outcomes]}),
                    redact_error("; ".join(f"{o.key}: {o.error}" for o in failures) or None),
                    summary.run_id,
                ),
            )
    except Exception as exc:
        if not is_connection_lost(exc):
            raise
        summary.database_lost = True
        log.error("%s; run %s stays open", lost_database(exc, "closing the CRM run"), summary.run_id, event="db")
    if failures and options.alert:
        payload = {
            "kind": "crm_download_failed",
            "title": f"CRM download: {len(failures)} of {len(summary.outcomes)} store(s) failed",
            "run_id": str(summary.run_id),
            "exit_code": summary.exit_code,
            "stores": [o.as_dict() for o in failures],
            "actions": [
                bootstrap_command(s)
                for s in stores
                if any(o.key == s.key and o.status == "needs_bootstrap" for o in failures)
            ],
        }
        await asyncio.to_thread(send_alert, settings, payload)
    return summary


async def _run_store(
    config: CrmRunConfig,
    db: Database,
    store: CrmStore,
    run_id: uuid.UUID,
    requested: Window | None,
    today: date,
    options: DownloadOptions,
    progress: Progress,
    http: httpx.AsyncClient,
    holder: BrowserHolder,
) -> StoreOutcome:
    slog = get_logger("crm", store.key)
    started = datetime.now().astimezone()
    clock = asyncio.get_running_loop().time()
    outcome = StoreOutcome(store.key, "failed")
    try:
        lock_conn = await asyncio.to_thread(db.connect, autocommit=True)
    except StoreflowError as exc:  # the database cannot be reached (exit 4)
        outcome.error, outcome.unavailable, outcome.window = str(exc), True, requested
        slog.error("failed: %s", exc, event="db")
        progress.update(store.key, "failed", outcome.error)
        return outcome
    try:
        if not await asyncio.to_thread(try_lock_store, lock_conn, store.key):
            outcome.status = "skipped"
            outcome.error = f"skipped: already running (lock held): another run of store {store.key} holds its lock"
            slog.warning("%s: %s", store.key, outcome.error, event="lock")
            progress.update(store.key, "skipped", outcome.error)
            window = requested or Window(today, today)
            await asyncio.to_thread(_audit, db, store, run_id, window, INGEST_SKIPPED, started, outcome.error, None)
            outcome.window = window
            return outcome
        try:
            window = requested or auto_window(
                await asyncio.to_thread(_last_success, db, store), today, config.overlap_days, config.backfill_days
            )
            outcome.window = window
            progress.update(store.key, "session", f"window {window}")
            slog.info("window %s (mode %s)", window, store.mode, event="window")
            client = client_for(config.portal, store, http, holder.get)
            downloaded = await _download_with_session(config, db, store, client, window, progress, slog)
            progress.update(store.key, "ingest", downloaded.path.name)
            info = FileInfo(
                run_id, store.crm, store.code, downloaded.report_type, downloaded.mode, window.start, window.end
            )
            result = await asyncio.to_thread(_ingest, db, downloaded.path, info)
            outcome.status, outcome.file, outcome.error = result.status, downloaded.path.name, result.error
            outcome.inserted, outcome.updated, outcome.rejected = result.inserted, result.updated, result.rejected
            _retain(config, downloaded.path, result, options.keep_files)
        except NeedsBootstrapError as exc:
            outcome.status, outcome.error = "needs_bootstrap", str(exc)
            slog.error("%s; run: %s", exc, bootstrap_command(store), event="needs_bootstrap")
            await _audit_unless_lost(
                db,
                store,
                run_id,
                outcome.window,
                NEEDS_BOOTSTRAP,
                started,
                f"{exc}; run: {bootstrap_command(store)}",
                store.mode,
            )
        except Exception as exc:  # a store's error (portal, Playwright, OS, database) must not stop the others
            if is_connection_lost(exc):
                outcome.status, outcome.unavailable = "failed", True
                outcome.error = str(lost_database(exc, f"processing store {store.key}"))
                slog.error("failed: %s", outcome.error, event="db")
            elif isinstance(exc, StoreflowError):
                outcome.status, outcome.error = "failed", str(exc)
                slog.error("failed: %s", exc, event="download")
            else:
                outcome.status, outcome.error = (
                    "failed",
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                )
                slog.exception("failed: %s", outcome.error, event="download")
            await _audit_unless_lost(
                db, store, run_id, outcome.window, INGEST_FAILED, started, outcome.error, store.mode
            )
        finally:
            try:
                await asyncio.to_thread(unlock_store, lock_conn, store.key)
            except Exception as exc:  # a lost connection has released the lock already
                slog.info("lock not released explicitly: %s", _first_line(exc), event="lock")
    finally:
        await asyncio.to_thread(lock_conn.close)
    outcome.seconds = asyncio.get_running_loop().time() - clock
    progress.update(store.key, outcome.status, outcome.error or f"+{outcome.inserted} ~{outcome.updated}")
    return outcome


def _first_line(exc: BaseException) -> str | None:
    return redact_error((str(exc).strip().splitlines() or [type(exc).__name__])[0])


async def _download_with_session(
    config: CrmRunConfig,
    db: Database,
    store: CrmStore,
    client: PortalClient,
    window: Window,
    progress: Progress,
    slog: Any,
) -> Downloaded:
    vault = SessionVault(config.profiles_dir)
    state: StorageState | None = vault.load(store.key)
    relogged = False

    async def relogin(reason: str) -> StorageState:
        nonlocal relogged
        if store.otp_required or relogged:
            await asyncio.to_thread(_session_check, db, vault, store, False, reason)
            raise NeedsBootstrapError(f"{store.key}: {reason}; the session needs a bootstrap (OTP)")
        relogged = True
        progress.update(store.key, "login", "re-authenticating")
        slog.info("%s: logging in again (no OTP needed)", reason, event="auth")

        async def no_otp() -> str:
            raise NeedsBootstrapError(f"{store.key}: the portal asked for an OTP")

        new_state = await client.login(no_otp)
        vault.save(store.key, new_state)
        await asyncio.to_thread(_session_check, db, vault, store, True, f"re-authenticated ({reason})")
        return new_state

    if state is None:
        state = await relogin("no stored session")
    elif not await client.probe(state):
        state = await relogin("the stored session expired")
    else:
        await asyncio.to_thread(_session_check, db, vault, store, True, "probe ok")
    progress.update(store.key, "download", store.mode)
    try:
        downloaded = await asyncio.wait_for(
            client.download(state, window, config.download_dir),
            config.download_timeout * 3,
        )
    except SessionExpired as exc:
        state = await relogin(str(exc))
        downloaded = await client.download(state, window, config.download_dir)
    except TimeoutError as exc:
        raise DownloadError(f"{store.key}: the download took too long") from exc
    if downloaded.state:
        vault.save(store.key, downloaded.state)
    slog.info("downloaded %s (%d bytes)", downloaded.path.name, downloaded.path.stat().st_size, event="download")
    return downloaded


def _last_success(db: Database, store: CrmStore) -> date | None:
    with db.transaction() as conn:
        return last_success_end(conn, store.crm, store.code)


def _ingest(db: Database, path: Path, info: FileInfo) -> IngestResult:
    with db.pool.connection() as conn:
        return ingest_file(conn, path, info)


def _audit(
    db: Database,
    store: CrmStore,
    run_id: uuid.UUID,
    window: Window | None,
    status: str,
    started: datetime,
    error: str | None,
    mode: str | None,
) -> None:
    w = window or Window(date.today(), date.today())
    info = FileInfo(
        run_id,
        store.crm,
        store.code,
        REPORT_TYPES[store.crm],
        mode or store.mode,
        w.start,
        w.end,
    )  # type: ignore[arg-type]
    with db.transaction() as conn:
        record_audit(conn, info, status, started_at=started, error=error)


async def _audit_unless_lost(db: Database, store: CrmStore, *args: Any) -> None:
    """`_audit` after a failure; a database that is gone cannot take the row, which the log then says."""
    try:
        await asyncio.to_thread(_audit, db, store, *args)
    except Exception as exc:
        if not is_connection_lost(exc):
            raise
        log.error("%s: audit row not written: %s", store.key, lost_database(exc, "auditing"), event="db")


def _retain(config: CrmRunConfig, path: Path, result: IngestResult, keep_files: bool) -> None:
    """Delete the file after a successful ingestion unless --keep-files or retention_days keeps it."""
    days = config.retention_days
    if result.ok and not keep_files and days == 0:
        path.unlink(missing_ok=True)
    folder = config.download_dir
    if days > 0 and folder.is_dir() and not keep_files:
        files = [(p, datetime.fromtimestamp(p.stat().st_mtime)) for p in folder.glob("*_to_*.*") if p.is_file()]
        for old in expired_files(files, datetime.now(), days):
            old.unlink(missing_ok=True)
