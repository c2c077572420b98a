"""`storeflow worker` and `storeflow jobs list/run/retry/cancel/schedules` (docs/jobs.md).

`jobs run NAME --wait` exits with the worst job's exit code (storeflow's exit codes: 0 ok,
1 failed, 2 configuration, 3 needs bootstrap, 4 unavailable, 5 rate limited, 6 skipped).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from storeflow.context import get_context
from storeflow.errors import EXIT_FAILED, EXIT_OK, ConfigError
from storeflow.jobs import names
from storeflow.logs import redact, redacting_console

console = redacting_console()
app = typer.Typer(
    help=(
        "Scheduled and on-demand jobs (procrastinate on the storeflow database); `storeflow worker` runs them.\n\n"
        f"Jobs: {', '.join(names.PUBLIC_TASKS)}."
    ),
    no_args_is_help=True,
)


def worker_command(
    ctx: typer.Context,
    queues: Annotated[
        str | None, typer.Option("--queues", help=f"Comma-separated queues (default all: {','.join(names.QUEUES)}).")
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option("--concurrency", min=1, help="Hallmark, ESL, alert and cleanup jobs at once (default 2)."),
    ] = None,
    browsers: Annotated[
        int | None, typer.Option("--browsers", min=1, help="CRM (browser) jobs at once (default [crm] concurrency).")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Worker name in logs (default host-pid).")] = None,
) -> None:
    """Run storeflow's jobs (CRM, Hallmark, ESL resync, alerts, cleanup) and fire the \\[\\[schedule]] tables.

    Run one per machine; SIGTERM finishes the jobs in hand (JOB_SHUTDOWN_GRACE_SECONDS), then hands
    them back. Example: `storeflow worker --queues crm --browsers 4`.
    """
    from storeflow.jobs.worker import run_worker, worker_options

    app_ctx = get_context(ctx)
    settings = app_ctx.settings
    options = worker_options(settings, queues, concurrency, browsers, name)
    db = app_ctx.database()
    console.print(
        f"worker {options.name}: queues {','.join(options.queues)}; {options.browsers} browser job(s) and "
        f"{options.concurrency} other job(s) at once",
        highlight=False,
    )
    asyncio.run(run_worker(settings, db, options))


@app.command("run")
def run_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help=f"One of {', '.join(names.PUBLIC_TASKS)}.")],
    crm: Annotated[str, typer.Option("--crm", help="crm.download: td, uc or all.")] = "all",
    store: Annotated[str, typer.Option("--store", help="crm.download / esl.resync: a store code or all.")] = "all",
    start: Annotated[str | None, typer.Option("--from", help="First day (default: incremental window).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for every job; exit with the worst exit code.")] = False,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="With --wait: give up after this many seconds (exit 1).")
    ] = None,
) -> None:
    """Defer a job now (one per store); with --wait, wait for them and exit with the worst exit code.

    Examples: `storeflow jobs run crm.download --crm td --store all --wait`;
    `storeflow jobs run hallmark.bulk_orders --from 2025-03-01 --to 2025-03-14`.
    """
    from storeflow.jobs.app import plan

    app_ctx = get_context(ctx)
    settings = app_ctx.settings
    if (start is None) != (end is None) and name != names.CRM_DOWNLOAD:
        raise ConfigError("--from and --to go together")
    planned = plan(settings, name, crm=crm, store=store, start=start, end=end)
    db = app_ctx.database()
    code = asyncio.run(_run(settings, db, planned, wait, timeout))
    raise typer.Exit(code)


async def _run(settings: Any, db: Any, planned: list[Any], wait: bool, timeout: float | None) -> int:
    from storeflow.jobs.app import build_app, defer

    app = build_app(settings, db)
    async with app.open_async():
        deferred = [await defer(app, p) for p in planned]
    for d in deferred:
        note = " (already waiting)" if d.already_queued else ""
        console.print(f"job {d.job_id}: {d.planned.task} {d.planned.subject or ''}{note}", highlight=False)
    if not wait:
        return EXIT_OK
    return await asyncio.to_thread(_wait, db, deferred, timeout)


def _wait(db: Any, deferred: list[Any], timeout: float | None) -> int:
    from storeflow.jobs.policy import worst_exit_code
    from storeflow.jobs.store import job_states

    ids = sorted({d.job_id for d in deferred})
    subjects = {d.job_id: d.planned.subject or "" for d in deferred}
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with db.transaction() as conn:
            states = job_states(conn, ids)
        if all(s.status in names.FINISHED for s in states) and len(states) == len(ids):
            break
        if deadline is not None and time.monotonic() > deadline:
            console.print(f"timed out after {timeout:.0f}s; the jobs go on (see `storeflow jobs list`)")
            return EXIT_FAILED
        time.sleep(0.5)
    table = Table("job", "task", "subject", "status", "attempts", "exit", "error")
    codes = []
    for s in sorted(states, key=lambda s: s.id):
        code = s.exit_code if s.exit_code is not None else (EXIT_OK if s.status == names.SUCCEEDED else EXIT_FAILED)
        codes.append(code)
        table.add_row(
            str(s.id),
            s.task_name,
            subjects.get(s.id, ""),
            s.status,
            str(s.attempts),
            str(code),
            escape(redact(s.error or ""))[:120],
        )
    console.print(table)
    return worst_exit_code(codes)


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help=f"One of {', '.join(names.STATUSES)}.")] = None,
    task: Annotated[str | None, typer.Option("--task", help="Only this job name.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many (newest first).")] = 50,
) -> None:
    """Jobs, newest first: status, attempts, store, exit code and error of the last attempt."""
    from storeflow.jobs.store import list_jobs, utc_text

    if status is not None and status not in names.STATUSES:
        raise ConfigError(f"--status {status!r}: use one of {', '.join(names.STATUSES)}")
    db = get_context(ctx).database()
    with db.transaction() as conn:
        rows = list_jobs(conn, status, task, limit)
    table = Table("job", "task", "queue", "status", "attempts", "args", "deferred", "exit", "error")
    for r in rows:
        args = ", ".join(f"{k}={v}" for k, v in (r["args"] or {}).items() if v not in (None, [], ""))
        table.add_row(
            str(r["id"]),
            r["task_name"],
            r["queue_name"],
            r["status"],
            str(r["attempts"]),
            args[:60],
            utc_text(r["deferred_at"]),
            "" if r["exit_code"] is None else str(r["exit_code"]),
            escape(redact(r["error"] or ""))[:100],
        )
    console.print(table)


@app.command("retry")
def retry_cmd(ctx: typer.Context, job_id: Annotated[int, typer.Argument(help="The job id (`jobs list`).")]) -> None:
    """Run a failed (or waiting) job again now."""

    async def go() -> None:
        from procrastinate.exceptions import ProcrastinateException

        from storeflow.jobs.app import build_app

        app_ctx = get_context(ctx)
        app = build_app(app_ctx.settings, app_ctx.database())
        async with app.open_async():
            try:
                await app.job_manager.retry_job_by_id_async(job_id, retry_at=dt.datetime.now(dt.UTC))
            except ProcrastinateException as exc:
                raise ConfigError(f"job {job_id} cannot be retried: {exc}") from exc

    asyncio.run(go())
    console.print(f"job {job_id}: queued again")


@app.command("cancel")
def cancel_cmd(ctx: typer.Context, job_id: Annotated[int, typer.Argument(help="The job id (`jobs list`).")]) -> None:
    """Cancel a waiting job, or ask its worker to abort a running one."""

    async def go() -> bool:
        from storeflow.jobs.app import build_app

        app_ctx = get_context(ctx)
        app = build_app(app_ctx.settings, app_ctx.database())
        async with app.open_async():
            return await app.job_manager.cancel_job_by_id_async(job_id, abort=True)

    if not asyncio.run(go()):
        raise ConfigError(f"job {job_id} is not waiting or running (see `storeflow jobs list`)")
    console.print(f"job {job_id}: cancelled (a running job is aborted by its worker)")


@app.command("schedules")
def schedules_cmd(ctx: typer.Context) -> None:
    """The \\[\\[schedule]] tables with their last and next fire time (UTC, as procrastinate reads cron)."""
    from storeflow.jobs.schedules import next_fire, periodic_defs
    from storeflow.jobs.store import last_ticks

    app_ctx = get_context(ctx)
    settings = app_ctx.settings
    defs = periodic_defs(settings.config.schedule)
    if not defs:
        console.print(f"no [[schedule]] tables in {settings.config_path or 'the configuration'}", markup=False)
        return
    with app_ctx.database().transaction() as conn:
        last = last_ticks(conn)
    now = dt.datetime.now(dt.UTC)
    table = Table("job", "cron (UTC)", "selection", "last fired (UTC)", "next fire (UTC)", "periodic id")
    for d in defs:
        selection = " ".join(f"{k}={v}" for k, v in d.params.items() if v not in (None, [], ""))
        fired = f"{last[d.periodic_id]:%Y-%m-%d %H:%M:%S}" if d.periodic_id in last else "never"
        table.add_row(d.job, d.cron, selection, fired, f"{next_fire(d.cron, now):%Y-%m-%d %H:%M:%S}", d.periodic_id)
    console.print(table)
