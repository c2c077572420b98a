"""storeflow's procrastinate tasks. Each calls a pipeline's public entry point and reports an `Outcome`.

`guarded` runs a task body and turns what happened into the job's fate, the same way for every task:
it records the attempt in `job_outcomes` (exit code, failure kind, error), raises `JobFailed` so
procrastinate retries a transient failure (`app.StoreflowRetry`) and never a permanent one, sends
one alert when a failure is final (and the same work's previous failure was not alerted already),
and turns a stopping worker's cancellation into `HandedBack` (the job runs again).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procrastinate import App, JobContext
from procrastinate.job_context import AbortReason

from storeflow.alerts import send_alert
from storeflow.db.pool import is_connection_lost
from storeflow.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_RATE_LIMITED,
    EXIT_UNAVAILABLE,
    ConfigError,
    NeedsBootstrapError,
    RateLimitStop,
    StoreflowError,
)
from storeflow.hallmark import store as hallmark_store
from storeflow.jobs import names, store
from storeflow.jobs.app import HandedBack, JobFailed, Runtime, StoreflowRetry, defer, hallmark_account, plan
from storeflow.jobs.policy import FailureKind, crm_outcome, failure_kind
from storeflow.jobs.windows import hallmark_window
from storeflow.logs import get_logger, redact_error

log = get_logger("jobs")
EXIT_INTERRUPTED = 130  # the CLI's exit code for an interrupted command


@dataclass
class Outcome:
    exit_code: int
    detail: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    failure: FailureKind | None = None  # None: decided by the exit code (policy.failure_kind)


def _today(text: str | None) -> dt.date:
    return dt.date.fromisoformat(text) if text else dt.date.today()


async def guarded(
    rt: Runtime, context: JobContext, subject: str | None, body: Callable[[], Awaitable[Outcome]]
) -> dict[str, Any]:
    job = context.job
    assert job.id is not None
    attempt = job.attempts + 1
    started = dt.datetime.now(dt.UTC)
    try:
        outcome = await body()
    except asyncio.CancelledError:
        if context.abort_reason() != AbortReason.SHUTDOWN:
            raise  # an operator's `jobs cancel`: the job ends aborted
        await _record(
            rt,
            job.id,
            attempt,
            job.task_name,
            subject,
            Outcome(
                EXIT_INTERRUPTED,
                failure="handed_back",
                error="the worker stopped before the job finished; it runs again",
            ),
            started,
            alerted=False,
        )
        raise HandedBack(f"job {job.id} handed back by a stopping worker") from None
    except StoreflowError as exc:
        outcome = Outcome(exc.exit_code, error=str(exc))
    except Exception as exc:  # the task's own error: recorded, retried within the budget
        if is_connection_lost(exc):
            outcome = Outcome(EXIT_UNAVAILABLE, error=f"the database was lost: {_first_line(exc)}")
        else:
            log.exception("%s %s failed", job.task_name, subject or "", event="job")
            outcome = Outcome(EXIT_FAILED, error=f"{type(exc).__name__}: {_first_line(exc)}", failure="transient")
    outcome.detail.setdefault("worker", context.worker_name)
    kind = outcome.failure or failure_kind(outcome.exit_code)
    final = kind == "permanent" or (kind == "transient" and attempt >= rt.config.retry.max_attempts)
    alerted = False
    if kind is not None and final:
        alerted = await _alert_once(rt, job.id, job.task_name, subject, attempt, outcome)
    await _record(rt, job.id, attempt, job.task_name, subject, outcome, started, alerted, kind)
    if kind is not None:
        log.warning(
            "%s %s: exit %d (%s%s): %s",
            job.task_name,
            subject or "",
            outcome.exit_code,
            kind,
            ", final" if final else ", will retry",
            outcome.error,
            event="job",
        )
        raise JobFailed(outcome.error or f"exit {outcome.exit_code}", outcome.exit_code, kind)
    return outcome.detail


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


async def _record(
    rt: Runtime,
    job_id: int,
    attempt: int,
    task: str,
    subject: str | None,
    outcome: Outcome,
    started: dt.datetime,
    alerted: bool,
    kind: FailureKind | None = None,
) -> None:
    def write() -> None:
        with rt.db.transaction() as conn:
            store.record_outcome(
                conn,
                job_id=job_id,
                attempt=attempt,
                task=task,
                subject=subject,
                exit_code=outcome.exit_code,
                failure=kind or outcome.failure,
                detail=outcome.detail,
                error=outcome.error,
                alerted=alerted,
                started_at=started,
            )

    try:
        await asyncio.to_thread(write)
    except Exception as exc:  # the job's fate stays procrastinate's; the outcome row is the explanation
        log.error("job %d: outcome not recorded: %s", job_id, redact_error(_first_line(exc)), event="db")


async def _alert_once(rt: Runtime, job_id: int, task: str, subject: str | None, attempt: int, outcome: Outcome) -> bool:
    def previous() -> bool:
        with rt.db.transaction() as conn:
            return store.already_alerted(conn, task, subject, job_id, outcome.exit_code)

    try:
        if await asyncio.to_thread(previous):
            log.info("%s %s: same failure as last time, alerted then", task, subject, event="alert")
            return True
    except Exception as exc:  # no database: alert anyway (better twice than never)
        log.warning("alert de-duplication unavailable: %s", _first_line(exc), event="alert")
    payload = {
        "kind": "job_failed",
        "title": f"job {task} {subject or ''} failed (exit {outcome.exit_code}) after {attempt} attempt(s)",
        "job_id": job_id,
        "task": task,
        "subject": subject,
        "exit_code": outcome.exit_code,
        "error": outcome.error,
        "actions": outcome.detail.get("actions", []),
    }
    results = await asyncio.to_thread(send_alert, rt.settings, payload)
    return "sent" in results.values()


# ---------------------------------------------------------------- the tasks


def register_tasks(app: App, rt: Runtime) -> None:
    retry = StoreflowRetry(rt.config.retry)

    @app.task(name=names.CRM_DOWNLOAD, queue=names.QUEUE_CRM, pass_context=True, retry=retry)
    async def crm_download(
        context: JobContext,
        crm: str,
        store: str,
        start: str | None = None,
        end: str | None = None,
        today: str | None = None,
    ) -> dict[str, Any]:
        return await guarded(rt, context, f"{crm}_{store}", lambda: _crm_download(rt, crm, store, start, end, today))

    async def hallmark_bulk(context: JobContext, kwargs: dict[str, Any]) -> dict[str, Any]:
        subject = names.hallmark_lock(hallmark_account(rt.settings))
        return await guarded(rt, context, subject, lambda: _hallmark_bulk(rt, app, context.job.task_name, **kwargs))

    @app.task(name=names.HALLMARK_BULK_ORDERS, queue=names.QUEUE_HALLMARK, pass_context=True, retry=retry)
    async def hallmark_bulk_orders(context: JobContext, **kwargs: Any) -> dict[str, Any]:
        return await hallmark_bulk(context, kwargs)

    @app.task(name=names.HALLMARK_BULK_BILLING, queue=names.QUEUE_HALLMARK, pass_context=True, retry=retry)
    async def hallmark_bulk_billing(context: JobContext, **kwargs: Any) -> dict[str, Any]:
        return await hallmark_bulk(context, kwargs)

    @app.task(name=names.HALLMARK_IMPORT, queue=names.QUEUE_HALLMARK, pass_context=True, retry=retry)
    async def hallmark_import(context: JobContext, files: list[str] | None = None) -> dict[str, Any]:
        return await guarded(rt, context, "hallmark", lambda: _hallmark_import(rt, files or []))

    @app.task(name=names.ESL_RESYNC, queue=names.QUEUE_ESL, pass_context=True, retry=retry)
    async def esl_resync(context: JobContext, store: str) -> dict[str, Any]:
        return await guarded(rt, context, store, lambda: _esl_resync(rt, app, store))

    @app.task(name=names.ALERTS_CHECK, queue=names.QUEUE_ALERTS, pass_context=True, retry=retry)
    async def alerts_check(context: JobContext, timestamp: int | None = None) -> dict[str, Any]:
        return await guarded(rt, context, names.ALERTS_CHECK, lambda: _alerts_check(rt))

    @app.task(name=names.CLEANUP, queue=names.QUEUE_MAINTENANCE, pass_context=True, retry=retry)
    async def cleanup(context: JobContext, timestamp: int | None = None) -> dict[str, Any]:
        return await guarded(rt, context, names.CLEANUP, lambda: _cleanup(rt, app))

    @app.task(name=names.FIRE_SCHEDULE, pass_context=True)
    async def fire_schedule(
        context: JobContext, timestamp: int, periodic_id: str, job: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        return await guarded(rt, context, periodic_id, lambda: _fire(rt, app, timestamp, job, params))

    @app.task(name=names.RETRY_STALLED, queue=names.QUEUE_MAINTENANCE, pass_context=True)
    async def retry_stalled(context: JobContext, timestamp: int) -> None:
        for stalled in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=rt.config.heartbeat_timeout):
            if stalled.id == context.job.id:
                continue
            log.warning(
                "job %s (%s) was running on a worker that stopped answering: running it again",
                stalled.id,
                stalled.task_name,
                event="stalled",
            )
            await app.job_manager.retry_job(stalled)
        # this task runs every few seconds: keep an hour of the maintenance queue's finished jobs, not months
        await app.job_manager.delete_old_jobs(nb_hours=1, queue=names.QUEUE_MAINTENANCE)


async def _crm_download(
    rt: Runtime, crm: str, code: str, start: str | None, end: str | None, today: str | None
) -> Outcome:
    from storeflow.crm.progress import Progress
    from storeflow.crm.runner import DownloadOptions, bootstrap_command, check_stores, run_download, select_stores

    stores = select_stores(rt.settings, crm, code)
    check_stores(rt.settings, stores)
    options = DownloadOptions(
        start=start, end=end, today=_today(today) if today else None, alert=False, command="job crm.download"
    )
    async with rt.browsers:
        summary = await run_download(
            rt.settings, rt.db, stores, options, Progress([s.key for s in stores]), portal=rt.portal()
        )
    outcome = summary.outcomes[0]
    exit_code, kind = crm_outcome(outcome.status, outcome.file is not None, outcome.unavailable)
    detail = {**outcome.as_dict(), "run_id": str(summary.run_id)}
    if outcome.status == "needs_bootstrap":
        detail["actions"] = [bootstrap_command(stores[0])]
    return Outcome(exit_code, detail, outcome.error if exit_code else None, kind)


def _no_prompt(text: str) -> str:
    raise NeedsBootstrapError(
        "Hallmark asks for a one-time code and a worker cannot type one: run `storeflow hallmark auth-test` "
        "once at a terminal (the session is saved), or set MFA_METHOD=totp or webhook"
    )


async def _hallmark_bulk(
    rt: Runtime,
    app: App,
    task: str,
    start: str | None = None,
    end: str | None = None,
    today: str | None = None,
    customer_ids: list[str] | None = None,
) -> Outcome:
    from storeflow.hallmark.auth import Authenticator
    from storeflow.hallmark.extract import Extractor, ExtractRequest

    kind = names.HALLMARK_KINDS[task]
    if start and end:
        window_start, window_end = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    else:

        def last() -> dt.date | None:
            with rt.db.transaction() as conn:
                return hallmark_store.last_successful_window(conn, kind)

        window = hallmark_window(
            await asyncio.to_thread(last),
            _today(today),
            rt.config.hallmark_overlap_days,
            rt.config.hallmark_backfill_days,
        )
        window_start, window_end = window.start, window.end
    request = ExtractRequest(kind, start=window_start, end=window_end, customer_ids=list(customer_ids or []))  # type: ignore[arg-type]
    auth = Authenticator(rt.settings, headless=rt.settings.HEADLESS_MODE, prompt=_no_prompt)
    try:
        summary = await Extractor(rt.settings, rt.db, auth).run(request)
    except RateLimitStop as exc:
        return Outcome(EXIT_RATE_LIMITED, {"from": str(window_start), "to": str(window_end)}, str(exc))
    detail = {
        "run_id": str(summary.run_id),
        "from": str(window_start),
        "to": str(window_end),
        "found": summary.found,
        "downloaded": summary.downloaded,
        "skipped": summary.skipped,
        "failed": summary.failed,
        "logins": summary.logins,
        "reused_session": summary.reused_session,
    }

    def files() -> list[str]:
        with rt.db.transaction() as conn:
            return hallmark_store.downloaded_files(conn, summary.run_id)

    written = await asyncio.to_thread(files)
    if written:
        (planned,) = plan(rt.settings, names.HALLMARK_IMPORT, files=written)
        detail["import_job"] = (await defer(app, planned)).job_id
    if summary.status != "ok":
        last_error = summary.failures[-1][1] if summary.failures else summary.status
        return Outcome(EXIT_FAILED, detail, f"{summary.failed} record(s) failed; last: {last_error}")
    return Outcome(EXIT_OK, detail)


async def _hallmark_import(rt: Runtime, files: list[str]) -> Outcome:
    """Import the files an extraction wrote (upserts, idempotent); no files: the whole output directory."""
    from storeflow.hallmark.importer import import_directory, import_files

    settings = rt.settings
    fallback = {s.customer_id: (s.store_number, s.store_name) for s in settings.config.hallmark.stores}
    if files:
        summary = await asyncio.to_thread(import_files, rt.db, [Path(f) for f in files], 2, fallback)
    else:
        if not settings.OUTPUT_DIRECTORY.is_dir():
            raise ConfigError(f"data directory not found: {settings.OUTPUT_DIRECTORY}")
        summary = await asyncio.to_thread(import_directory, rt.db, settings.OUTPUT_DIRECTORY, 2, fallback)
    totals = {
        "files": summary.files,
        "orders": summary.orders,
        "order_lines": summary.order_lines,
        "billing_documents": summary.billing_documents,
        "billing_lines": summary.billing_lines,
        "failed": len(summary.failed),
    }
    failed = [f"{path}: {error}" for path, error in summary.failed]
    if failed:  # a bad file stays bad: no retry
        return Outcome(EXIT_FAILED, totals, f"{len(failed)} file(s) not imported; first: {failed[0]}", "permanent")
    return Outcome(EXIT_OK, totals)


async def _esl_resync(rt: Runtime, app: App, code: str) -> Outcome:
    from storeflow.esl.store import enqueue_resync, list_mappings, store_code_known

    if code == "all":  # one job per active store mapping

        def codes() -> list[str]:
            with rt.db.transaction() as conn:
                return sorted({m["hipoink_store_code"] for m in list_mappings(conn) if m.get("active", True)})

        planned = plan(rt.settings, names.ESL_RESYNC, stores=await asyncio.to_thread(codes))
        deferred = [await defer(app, p) for p in planned]
        return Outcome(EXIT_OK, {"deferred": [d.job_id for d in deferred if d.planned.subject != "all"]})

    def resync() -> dict[str, int]:
        with rt.db.transaction() as conn:
            if not store_code_known(conn, code):
                raise ConfigError(f"no store mapping has Hipoink store code {code!r} (`storeflow esl mappings list`)")
            return enqueue_resync(conn, code)

    return Outcome(EXIT_OK, dict(await asyncio.to_thread(resync)))


async def _alerts_check(rt: Runtime) -> Outcome:
    from storeflow.dashboard.alerts import run_check

    def check() -> dict[str, Any]:
        with rt.db.pool.connection() as conn:
            report = run_check(rt.settings, conn)
        return {"conditions": len(report.conditions), "sent": report.delivered}

    return Outcome(EXIT_OK, await asyncio.to_thread(check))


async def _cleanup(rt: Runtime, app: App) -> Outcome:
    from storeflow.crm.files import expired_files

    days = rt.config.retention_days
    await app.job_manager.delete_old_jobs(
        nb_hours=days * 24, include_failed=True, include_cancelled=True, include_aborted=True
    )

    def sweep() -> dict[str, int]:
        with rt.db.transaction() as conn:
            outcomes = store.delete_old_outcomes(conn, days)
        now = dt.datetime.now()
        removed = 0
        # downloads left behind (failed files kept for inspection) and rotated logs, past the retention
        folders = [(rt.settings.config.crm.download_dir, "*_to_*.*"), (rt.settings.LOG_DIRECTORY, "*.log.*")]
        for folder, pattern in folders:
            if not folder.is_dir():
                continue
            found = [(p, dt.datetime.fromtimestamp(p.stat().st_mtime)) for p in folder.glob(pattern) if p.is_file()]
            for path in expired_files(found, now, days):
                path.unlink(missing_ok=True)
                removed += 1
        return {"job_outcomes_deleted": outcomes, "files_deleted": removed}

    return Outcome(EXIT_OK, await asyncio.to_thread(sweep))


async def _fire(rt: Runtime, app: App, timestamp: int, job: str, params: dict[str, Any]) -> Outcome:
    """One tick of a schedule: defer its jobs (one per store), each under its own locks."""
    stores = params.get("stores")
    planned = plan(
        rt.settings,
        job,
        crm=params.get("crm", "all"),
        stores=None if stores == "all" else stores,
        excluded=params.get("excluded"),
        customer_ids=params.get("customer_ids"),
    )
    deferred = [await defer(app, p) for p in planned]
    log.info(
        "schedule tick %s: %s -> %d job(s)",
        time.strftime("%H:%M:%S", time.gmtime(timestamp)),
        job,
        len(deferred),
        event="schedule",
    )
    return Outcome(
        EXIT_OK,
        {
            "timestamp": timestamp,
            "jobs": [d.job_id for d in deferred],
            "already_waiting": [d.job_id for d in deferred if d.already_queued],
        },
    )
