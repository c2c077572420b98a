"""The procrastinate App on storeflow's database: tasks, retry strategy, schedules, deferring.

`build_app` makes one App per process (a worker, or a command that defers jobs). Tasks are the
closures of `storeflow.jobs.tasks`, bound to a `Runtime` (settings, database, the worker's browser
slots). `plan` turns an operator request (`jobs run NAME --crm --store --from --to`, or one
schedule tick) into the jobs to defer, each with its procrastinate lock and queueing lock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from procrastinate import App, BaseRetryStrategy, PsycopgConnector, RetryDecision
from procrastinate.exceptions import AlreadyEnqueued

from storeflow.errors import EXIT_FAILED, ConfigError, StoreflowError
from storeflow.jobs import names
from storeflow.jobs.policy import FailureKind, RetryConfig, failure_kind, retry_decision
from storeflow.jobs.schedules import is_excluded, periodic_defs
from storeflow.logs import get_logger

if TYPE_CHECKING:
    from procrastinate.jobs import Job

    from storeflow.crm.runner import BrowserHolder
    from storeflow.db.connect import Database
    from storeflow.settings import Settings

log = get_logger("jobs")


class JobFailed(StoreflowError):
    """A job's failure with the exit code the foreground command would have returned, and its kind."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED, failure: FailureKind = "transient") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.failure = failure


class HandedBack(Exception):
    """A stopping worker interrupted the job after its grace period: it runs again, elsewhere or later."""


class StoreflowRetry(BaseRetryStrategy):
    """procrastinate's retry hook over `policy.retry_decision` (transient: backoff; permanent: never)."""

    def __init__(self, config: RetryConfig) -> None:
        self.config = config

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        kind: FailureKind | None
        if isinstance(exception, HandedBack):
            kind = "handed_back"
        elif isinstance(exception, JobFailed):
            kind = exception.failure
        elif isinstance(exception, StoreflowError):
            kind = failure_kind(exception.exit_code)
        elif isinstance(exception, Exception):
            kind = "transient"  # an unexpected error: a later attempt may not meet it; the budget bounds it
        else:
            kind = None  # cancellation by an operator, interpreter exit
        if kind is None:
            return None
        delay = retry_decision(kind, job.attempts + 1, self.config)
        return None if delay is None else RetryDecision(retry_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay))


@dataclass(frozen=True)
class JobsConfig:
    """The numbers the jobs engine needs from settings (settings are never mutated after load)."""

    retry: RetryConfig
    heartbeat_timeout: float
    stalled_check_seconds: int
    shutdown_grace: float
    poll_interval: float
    retention_days: int
    browsers: int
    hallmark_overlap_days: int
    hallmark_backfill_days: int

    @classmethod
    def from_settings(cls, settings: Settings, browsers: int | None = None) -> JobsConfig:
        return cls(
            retry=RetryConfig.from_settings(settings),
            heartbeat_timeout=settings.JOB_HEARTBEAT_TIMEOUT_SECONDS,
            stalled_check_seconds=settings.JOB_STALLED_CHECK_SECONDS,
            shutdown_grace=settings.JOB_SHUTDOWN_GRACE_SECONDS,
            poll_interval=settings.JOB_POLL_INTERVAL_SECONDS,
            retention_days=settings.JOB_RETENTION_DAYS,
            browsers=browsers or settings.config.crm.concurrency,
            hallmark_overlap_days=settings.HALLMARK_OVERLAP_DAYS,
            hallmark_backfill_days=settings.HALLMARK_BACKFILL_DAYS,
        )


@dataclass
class Runtime:
    """What the tasks of one process share: settings, the database, the browser slots, the portal session."""

    settings: Settings
    db: Database
    config: JobsConfig
    _browsers: asyncio.Semaphore | None = field(default=None, repr=False)
    _portal: tuple[httpx.AsyncClient, BrowserHolder] | None = field(default=None, repr=False)

    @property
    def browsers(self) -> asyncio.Semaphore:
        """At most ``crm.concurrency`` (or ``--browsers``) CRM jobs at once in this process."""
        if self._browsers is None:
            self._browsers = asyncio.Semaphore(self.config.browsers)
        return self._browsers

    def portal(self) -> tuple[httpx.AsyncClient, BrowserHolder]:
        """This process's one HTTP client and one browser for all its CRM jobs (each store in its own
        context), made by the first CRM job; Chromium starts on the first browser-mode store, and a
        browser that crashed is replaced by the next job (`BrowserHolder`). Closed by `close`."""
        if self._portal is None:  # no await between the test and the assignment: one per process
            from storeflow.crm.runner import BrowserHolder, CrmRunConfig, resolve_headless

            crm = CrmRunConfig.from_settings(self.settings)
            self._portal = (
                httpx.AsyncClient(timeout=crm.download_timeout),
                BrowserHolder(crm, resolve_headless(crm, None)),
            )
        return self._portal

    async def close(self) -> None:
        """Close the portal session (the worker process is stopping)."""
        portal, self._portal = self._portal, None
        if portal is not None:
            http, holder = portal
            try:
                await holder.close()
            finally:
                await http.aclose()


def build_app(
    settings: Settings, db: Database, browsers: int | None = None, pool_size: int = 4, runtime: Runtime | None = None
) -> App:
    """The App with every storeflow task and every ``[[schedule]]`` registered (not opened).

    A worker passes its ``runtime`` so that it can close the runtime's portal session when it stops.
    """
    from storeflow.jobs.tasks import register_tasks

    conninfo, kwargs = jobs_connection(db)
    connector = PsycopgConnector(conninfo=conninfo, min_size=1, max_size=pool_size, kwargs=kwargs)
    app = App(connector=connector)
    runtime = runtime or Runtime(settings, db, JobsConfig.from_settings(settings, browsers))
    register_tasks(app, runtime)
    register_schedules(app, settings, runtime.config)
    return app


def jobs_connection(db: Database) -> tuple[str, dict[str, Any]]:
    """Where procrastinate connects, and how. Its worker LISTENs and its queries are prepared, which a
    transaction pooler (``DATABASE_POOLER=transaction``) breaks: behind one it takes
    ``DATABASE_DIRECT_URL`` when set, and otherwise the pooled URL with no prepared statements (the
    worker then polls; see `listens`)."""
    kwargs: dict[str, Any] = {
        "application_name": "storeflow-jobs",
        "connect_timeout": max(1, int(db.pool_config.connect_timeout)),
    }
    direct = db.pool_config.listen_url(db.url)
    if direct is not None:
        return direct, kwargs
    return db.url, {**kwargs, "prepare_threshold": None}


def listens(db: Database) -> bool:
    """Whether procrastinate's workers may LISTEN (not on a transaction-pooled URL: they poll)."""
    return db.pool_config.listen_url(db.url) is not None


def register_schedules(app: App, settings: Settings, config: JobsConfig) -> None:
    """Each ``[[schedule]]`` as a procrastinate periodic task (one tick job, deduplicated across workers)."""
    fire = app.tasks[names.FIRE_SCHEDULE]
    for definition in periodic_defs(settings.config.schedule):
        app.periodic_registry.register_task(
            task=fire,
            cron=definition.cron,
            periodic_id=definition.periodic_id,
            configure_kwargs={
                "queue": definition.queue,
                # a tick whose job still waits is not deferred twice by a deferrer that runs late
                "queueing_lock": f"tick:{definition.periodic_id}",
                "task_kwargs": {
                    "periodic_id": definition.periodic_id,
                    "job": definition.job,
                    "params": definition.params,
                },
            },
        )
    # stalled-job recovery (procrastinate's documented pattern): every few seconds, on one worker
    app.periodic_registry.register_task(
        task=app.tasks[names.RETRY_STALLED],
        cron=f"* * * * * */{config.stalled_check_seconds}",
        periodic_id="stalled",
        configure_kwargs={"queue": names.QUEUE_MAINTENANCE, "queueing_lock": names.RETRY_STALLED},
    )


# ---------------------------------------------------------------- planning and deferring


@dataclass(frozen=True)
class PlannedJob:
    task: str
    kwargs: dict[str, Any]
    subject: str | None = None
    lock: str | None = None
    queueing_lock: str | None = None

    @property
    def queue(self) -> str:
        return names.TASK_QUEUES[self.task]


@dataclass(frozen=True)
class Deferred:
    job_id: int
    planned: PlannedJob
    already_queued: bool = False


def hallmark_account(settings: Settings) -> str:
    return (settings.HALLMARK_USERNAME or "default").lower()


def plan(
    settings: Settings,
    task: str,
    crm: str = "all",
    store: str = "all",
    start: str | None = None,
    end: str | None = None,
    today: str | None = None,
    stores: list[str] | None = None,
    excluded: list[str] | None = None,
    customer_ids: list[str] | None = None,
    files: list[str] | None = None,
) -> list[PlannedJob]:
    """The jobs one request makes: one per CRM store (or ESL store), else one."""
    if task not in names.PUBLIC_TASKS:
        raise ConfigError(f"unknown job {task!r}; known: {', '.join(names.PUBLIC_TASKS)}")
    if task == names.CRM_DOWNLOAD:
        from storeflow.crm.runner import check_stores, select_stores
        from storeflow.crm.windows import requested_window

        requested_window(start, end, dt.date.today())  # a bad date fails before anything is deferred
        chosen = select_stores(settings, crm, store)
        if stores is not None:
            wanted = {s.lower() for s in stores}
            chosen = [s for s in chosen if s.code.lower() in wanted or s.key in wanted]
        chosen = [s for s in chosen if not is_excluded(s.crm, s.code, excluded or [])]
        check_stores(settings, chosen)
        return [
            PlannedJob(
                task,
                {"crm": s.crm, "store": s.code, "start": start, "end": end, "today": today},
                subject=s.key,
                lock=names.crm_lock(s.key),
                queueing_lock=names.crm_lock(s.key),
            )
            for s in chosen
        ]
    if task in names.HALLMARK_KINDS:
        account = names.hallmark_lock(hallmark_account(settings))
        kwargs = {"start": start, "end": end, "today": today, "customer_ids": customer_ids or []}
        return [PlannedJob(task, kwargs, subject=account, lock=account, queueing_lock=f"{task}:{account}")]
    if task == names.HALLMARK_IMPORT:
        return [PlannedJob(task, {"files": files or []}, subject="hallmark")]
    if task == names.ESL_RESYNC:
        codes = stores if stores is not None else ([] if store.lower() == "all" else [store])
        return [
            PlannedJob(task, {"store": code}, subject=code, lock=f"esl:{code}", queueing_lock=f"esl:{code}")
            for code in codes
        ] or [PlannedJob(task, {"store": "all"}, subject="all")]
    return [PlannedJob(task, {}, subject=task, queueing_lock=task)]


async def defer(app: App, planned: PlannedJob) -> Deferred:
    """Defer one job; a job of the same queueing lock already waiting is reported, not doubled."""
    deferrer = app.configure_task(
        planned.task, queue=planned.queue, lock=planned.lock, queueing_lock=planned.queueing_lock
    )
    try:
        job_id = await deferrer.defer_async(**planned.kwargs)
    except AlreadyEnqueued:
        waiting = await app.job_manager.list_jobs_async(queueing_lock=planned.queueing_lock, status=names.TODO)
        ids = [j.id for j in waiting if j.id is not None]
        if not ids:  # it started meanwhile: this request is a new one
            job_id = await deferrer.defer_async(**planned.kwargs)
            return Deferred(job_id, planned)
        log.info("%s %s: already waiting as job %d", planned.task, planned.subject, ids[0], event="defer")
        return Deferred(ids[0], planned, already_queued=True)
    log.info("deferred %s %s as job %d", planned.task, planned.subject or "", job_id, event="defer")
    return Deferred(job_id, planned)
