"""`storeflow worker`: procrastinate's workers for storeflow's jobs, with storeflow's settings.

One process runs two procrastinate workers on one App: the browser worker takes the ``crm`` queue
with at most ``crm.concurrency`` (``--browsers``) jobs at once, the other takes the remaining queues
(``--concurrency`` jobs at once). A process never holds a CRM job it has no browser slot for, so
another machine's idle worker takes it. The process's CRM jobs share one HTTP client and one Chromium
(`Runtime.portal`, each store in its own context), started by the first job that needs it and closed
when the worker stops.

SIGTERM/SIGINT stop both gracefully: no new job is taken, jobs in hand get JOB_SHUTDOWN_GRACE_SECONDS
to finish, then are cancelled and handed back (they run again). A worker killed outright stops
sending heartbeats; after JOB_HEARTBEAT_TIMEOUT_SECONDS another worker's stalled-job recovery (the
``jobs.retry_stalled`` periodic task) runs its jobs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from procrastinate import App
from procrastinate.worker import Worker

from storeflow.errors import ConfigError
from storeflow.jobs import names
from storeflow.jobs.app import HandedBack, JobFailed, JobsConfig, Runtime, build_app, listens
from storeflow.logs import get_logger

if TYPE_CHECKING:
    from storeflow.db.connect import Database
    from storeflow.settings import Settings

log = get_logger("jobs")
OTHER_JOBS = 2  # Hallmark, ESL, alert and maintenance jobs at once beside the browser jobs (default)


@dataclass(frozen=True)
class WorkerOptions:
    queues: tuple[str, ...]
    concurrency: int  # jobs of the non-browser queues at once
    browsers: int  # crm.download jobs at once
    name: str


def worker_options(
    settings: Settings,
    queues: str | None = None,
    concurrency: int | None = None,
    browsers: int | None = None,
    name: str | None = None,
) -> WorkerOptions:
    """Validated worker options; the maintenance queue (cleanup, stalled jobs) is always served."""
    chosen = tuple(q.strip() for q in (queues or ",".join(names.QUEUES)).split(",") if q.strip())
    unknown = [q for q in chosen if q not in names.QUEUES]
    if unknown:
        raise ConfigError(f"--queues: unknown queue(s) {', '.join(unknown)}; known: {', '.join(names.QUEUES)}")
    if names.QUEUE_MAINTENANCE not in chosen:
        chosen += (names.QUEUE_MAINTENANCE,)
    slots = browsers or settings.config.crm.concurrency
    total = concurrency or OTHER_JOBS
    if slots < 1 or total < 1:
        raise ConfigError("--browsers and --concurrency must be at least 1")
    return WorkerOptions(chosen, total, slots, name or f"{socket.gethostname()}-{os.getpid()}")


def _workers(app: App, config: JobsConfig, options: WorkerOptions, wait: bool, listen: bool = True) -> list[Worker]:
    common: dict[str, Any] = {
        "wait": wait,
        "listen_notify": listen,  # not through a transaction pooler: poll every fetch_job_polling_interval
        "fetch_job_polling_interval": config.poll_interval,
        "abort_job_polling_interval": config.poll_interval,
        "shutdown_graceful_timeout": config.shutdown_grace,
        "update_heartbeat_interval": max(config.heartbeat_timeout / 3, 0.5),
        "stalled_worker_timeout": config.heartbeat_timeout,
        "install_signal_handlers": False,  # one handler stops both (see `stop_on_signals`)
    }
    quiet = _ExpectedFailures()
    for name in ("procrastinate.worker", "procrastinate"):
        if quiet not in logging.getLogger(name).filters:
            logging.getLogger(name).addFilter(quiet)
    workers = []
    if names.QUEUE_CRM in options.queues:
        # the same tasks and connector, no periodic registry: one periodic deferrer per process, not two
        browser_app = App(connector=app.connector)
        browser_app.tasks = app.tasks
        workers.append(Worker(browser_app, queues=[names.QUEUE_CRM], name=f"{options.name}/browser",
                              concurrency=options.browsers, **common))  # fmt: skip
    others = [q for q in options.queues if q != names.QUEUE_CRM]
    workers.append(Worker(app, queues=others, name=options.name, concurrency=options.concurrency, **common))
    return workers


class _ExpectedFailures(logging.Filter):
    """procrastinate logs a failed job with its traceback; a job's own failure (`JobFailed`) is one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], JobFailed | HandedBack):
            record.exc_info = None
            record.exc_text = None
        return True


@contextlib.contextmanager
def stop_on_signals(workers: list[Worker]) -> Iterator[None]:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        log.info("stop requested: finishing the jobs in hand", event="stop")
        for worker in workers:
            worker.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def run_worker(settings: Settings, db: Database, options: WorkerOptions) -> None:
    """Run until SIGTERM/SIGINT."""
    config = JobsConfig.from_settings(settings, options.browsers)
    runtime = Runtime(settings, db, config)
    app = build_app(settings, db, pool_size=options.browsers + options.concurrency + 4, runtime=runtime)
    log.info("worker %s: queues %s, %d browser job(s) and %d other job(s) at once", options.name,
             ",".join(options.queues), options.browsers, options.concurrency, event="start")  # fmt: skip
    try:
        async with app.open_async():
            workers = _workers(app, config, options, wait=True, listen=listens(db))
            with stop_on_signals(workers):
                await asyncio.gather(*(w.run() for w in workers))
    finally:
        await runtime.close()  # the process's one browser and HTTP client
    log.info("worker %s stopped", options.name, event="stop")


async def run_until_done(settings: Settings, db: Database, job_ids: list[int], options: WorkerOptions) -> None:
    """An in-process worker (the demo) that stops once ``job_ids`` and every job they deferred are finished."""
    from storeflow.jobs.store import busy_jobs

    config = JobsConfig.from_settings(settings, options.browsers)
    runtime = Runtime(settings, db, config)
    app = build_app(settings, db, pool_size=options.browsers + options.concurrency + 4, runtime=runtime)
    try:
        async with app.open_async():
            workers = _workers(app, config, options, wait=True, listen=listens(db))
            running = [asyncio.create_task(w.run()) for w in workers]
            try:
                while True:
                    await asyncio.sleep(0.2)
                    with db.transaction() as conn:
                        if not busy_jobs(conn, job_ids):
                            break
                    if any(t.done() for t in running):
                        break
            finally:
                for worker in workers:
                    worker.stop()
                await asyncio.gather(*running)
    finally:
        await runtime.close()


def run_jobs(settings: Settings, db: Database, planned: list[Any], options: WorkerOptions) -> list[dict[str, Any]]:
    """Defer ``planned`` and run them (and what they defer) in this process; their rows with outcomes.

    For `storeflow demo` and the tests: the same tasks, retries and locks as `storeflow worker`.
    """
    from storeflow.jobs.app import defer
    from storeflow.jobs.store import results_since

    async def go() -> list[int]:
        app = build_app(settings, db)
        async with app.open_async():
            ids = [(await defer(app, p)).job_id for p in planned]
        await run_until_done(settings, db, ids, options)
        return ids

    ids = asyncio.run(go())
    with db.transaction() as conn:
        return results_since(conn, ids) if ids else []
