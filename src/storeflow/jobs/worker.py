"""`storeflow worker`: procrastinate's worker for storeflow's jobs, with storeflow's settings.

SIGTERM/SIGINT stop it gracefully (procrastinate's handlers): no new job is taken, jobs in hand get
JOB_SHUTDOWN_GRACE_SECONDS to finish, then are cancelled and handed back (they run again). A worker
killed outright stops sending heartbeats; after JOB_HEARTBEAT_TIMEOUT_SECONDS another worker's
stalled-job recovery (the ``jobs.retry_stalled`` periodic task) runs its jobs again.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from storeflow.errors import ConfigError
from storeflow.jobs import names
from storeflow.jobs.app import JobsConfig, build_app
from storeflow.logs import get_logger

if TYPE_CHECKING:
    from storeflow.db.connect import Database
    from storeflow.settings import Settings

log = get_logger("jobs")


@dataclass(frozen=True)
class WorkerOptions:
    queues: tuple[str, ...]
    concurrency: int
    browsers: int
    name: str
    wait: bool = True  # False: stop once the queues are empty (the demo's in-process worker)


def worker_options(
    settings: Settings,
    queues: str | None = None,
    concurrency: int | None = None,
    browsers: int | None = None,
    name: str | None = None,
    wait: bool = True,
) -> WorkerOptions:
    """Validated worker options; the maintenance queue (cleanup, stalled jobs) is always served."""
    chosen = tuple(q.strip() for q in (queues or ",".join(names.QUEUES)).split(",") if q.strip())
    unknown = [q for q in chosen if q not in names.QUEUES]
    if unknown:
        raise ConfigError(f"--queues: unknown queue(s) {', '.join(unknown)}; known: {', '.join(names.QUEUES)}")
    if names.QUEUE_MAINTENANCE not in chosen:
        chosen += (names.QUEUE_MAINTENANCE,)
    slots = browsers or settings.config.crm.concurrency
    # browser jobs take at most `slots`; two more let a Hallmark, ESL or alert job run beside them
    total = concurrency or slots + 2
    if total < 1:
        raise ConfigError("--concurrency must be at least 1")
    return WorkerOptions(chosen, total, slots, name or f"{socket.gethostname()}-{os.getpid()}", wait)


async def run_worker(settings: Settings, db: Database, options: WorkerOptions) -> None:
    """Run until stopped (SIGTERM/SIGINT), or until the queues are empty when ``options.wait`` is False."""
    config = JobsConfig.from_settings(settings, options.browsers)
    app = build_app(settings, db, browsers=options.browsers, pool_size=options.concurrency + 3)
    log.info(
        "worker %s: queues %s, %d job(s) at once, %d browser job(s)",
        options.name,
        ",".join(options.queues),
        options.concurrency,
        options.browsers,
        event="start",
    )
    async with app.open_async():
        await app.run_worker_async(
            queues=list(options.queues),
            name=options.name,
            concurrency=options.concurrency,
            wait=options.wait,
            fetch_job_polling_interval=config.poll_interval,
            abort_job_polling_interval=config.poll_interval,
            shutdown_graceful_timeout=config.shutdown_grace,
            update_heartbeat_interval=max(config.heartbeat_timeout / 3, 0.5),
            stalled_worker_timeout=config.heartbeat_timeout,
            install_signal_handlers=options.wait,
        )
    log.info("worker %s stopped", options.name, event="stop")
