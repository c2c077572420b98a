"""The Aura client: httpx with the session's cookies and token, every call through the polite throttle.

Recovery rules (docs/hallmark.md, "What real Aura sites say"): an expired session in any of
its forms (``aura:invalidSession``, INVALID_SESSION_ID in an action's errors or an
exception message, a page bouncing to the login), 401, a redirect to the login page
or an empty body -> log in again once and repeat the call; ``aura:clientOutOfSync``
in any of its forms -> re-read the fwuid from ``/s/`` and repeat; if the server
still disagrees, use the fwuid it says it expects and repeat once more;
429 -> wait Retry-After up to RETRY_AFTER_CAP_SECONDS, past it stop the run
(`RateLimitStop`); timeouts, 5xx and truncated bodies -> retry with backoff up to
MAX_RETRIES.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from storeflow.errors import RateLimitStop
from storeflow.hallmark.aura import (
    ActionError,
    AuraAction,
    BadTokenError,
    ClientOutOfSyncError,
    InvalidSessionError,
    MalformedResponseError,
    build_request,
    find_fwuid,
    is_framework_event,
    parse_response,
)
from storeflow.hallmark.auth import Authenticator, PortalSession, cookie_jar
from storeflow.http.policy import (
    Action,
    Backoff,
    Body,
    Cause,
    RetryPolicy,
    cause_of,
    cause_of_error,
    classify_status,
    decide,
    parse_retry_after,
)
from storeflow.http.throttle import Throttle
from storeflow.logs import get_logger

if TYPE_CHECKING:
    from storeflow.settings import Settings

log = get_logger("api")

SESSION_STATUSES = frozenset({401})  # a 401 means "log in again"; a 403 is a refusal


class RequestFailedError(Exception):
    """One record could not be fetched (after retries); the run goes on with the next."""


@dataclass(frozen=True)
class HallmarkClientConfig:
    """What the Aura client reads from the settings."""

    base_url: str
    request_timeout: float = 30.0
    search_timeout: float = 60.0
    max_retries: int = 3
    retry_after_cap: float = 300.0

    @classmethod
    def from_settings(cls, settings: Settings) -> HallmarkClientConfig:
        return cls(
            base_url=settings.BASE_URL.rstrip("/"),
            request_timeout=settings.REQUEST_TIMEOUT_SECONDS,
            search_timeout=settings.SEARCH_TIMEOUT_SECONDS,
            max_retries=settings.MAX_RETRIES,
            retry_after_cap=settings.RETRY_AFTER_CAP_SECONDS,
        )

    def retry_policy(self, interval: float) -> RetryPolicy:
        """The retry policy of a request kind paced ``interval`` seconds apart: backoffs start there."""
        return RetryPolicy(
            max_retries=self.max_retries,
            backoff=Backoff(max(0.5, interval), maximum=60.0),
            rate_limit_backoff=Backoff(max(1.0, interval)),
            retry_after_cap=self.retry_after_cap,
        )


@dataclass
class ClientStats:
    calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    reauthenticated: int = 0
    resynced: int = 0


@dataclass
class Answer:
    """One attempt as the retry decision sees it: its cause (None: the value is good) and how to say it."""

    cause: Cause | None
    what: str  # for the log: "HTTP 503", "ReadTimeout", the parser's complaint
    failed: str  # the record's error if this attempt is the last
    value: Any = None
    error: Exception | None = None
    retry_after: float | None = None


def read_answer(response: httpx.Response) -> Answer:
    """What one Aura answer says: its value, or why the call failed."""
    status = response.status_code
    if 300 <= status < 400 and "login" in response.headers.get("location", "").lower():
        return Answer(cause_of(status, Body.LOGIN_PAGE), f"HTTP {status}", f"HTTP {status} again after logging in")
    # the open-source Aura server sends its session and framework events with HTTP 404, Salesforce
    # sites with 200: the event decides, whatever the status
    readable = classify_status(status) is None or is_framework_event(response.text)
    if status == 429 or status in SESSION_STATUSES or not readable:
        cause = cause_of(status, session_statuses=SESSION_STATUSES)
        failed = f"HTTP {status} again after logging in" if cause is Cause.SESSION_EXPIRED else f"HTTP {status}"
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if status == 429 else None
        return Answer(cause, f"HTTP {status}", failed, retry_after=retry_after)
    try:
        result = parse_response(response.text)
        if not result.has_action:
            raise MalformedResponseError("the answer carries no result for the action")
    except (InvalidSessionError, BadTokenError) as exc:
        return Answer(cause_of(status, Body.INVALID_SESSION), str(exc), f"{exc} (again after logging in)", error=exc)
    except ClientOutOfSyncError as exc:
        failed = "client out of sync again after re-reading fwuid"
        return Answer(cause_of(status, Body.OUT_OF_SYNC), str(exc), failed, error=exc)
    except MalformedResponseError as exc:
        return Answer(cause_of(status, Body.MALFORMED), str(exc), str(exc), error=exc)
    except ActionError as exc:
        return Answer(cause_of(status, Body.APP_ERROR), str(exc), str(exc), error=exc)
    return Answer(None, f"HTTP {status}", "", value=result.value)


def failed_call(exc: httpx.HTTPError) -> Answer:
    """An attempt that got no answer (timeout, connection error)."""
    return Answer(cause_of_error(exc), type(exc).__name__, f"{type(exc).__name__}: {exc}", error=exc)


class AuraClient:
    """Calls Apex actions on the community; ``http`` is injected (tests may pass a MockTransport client)."""

    def __init__(
        self, config: HallmarkClientConfig, http: httpx.AsyncClient, auth: Authenticator, throttle: Throttle
    ) -> None:
        self.config = config
        self.http = http
        self.auth = auth
        self.throttle = throttle
        self.session: PortalSession | None = None
        self.counter = 0
        self.stats = ClientStats()

    @property
    def base_url(self) -> str:
        return self.config.base_url

    async def connect(self) -> PortalSession:
        if self.session is None:
            self._use(await self.auth.session())
        assert self.session is not None
        return self.session

    def _use(self, session: PortalSession) -> None:
        self.session = session
        self.http.cookies.clear()
        for cookie in cookie_jar(session.cookies).jar:
            self.http.cookies.jar.set_cookie(cookie)
        if not session.fwuid:
            log.warning("no fwuid on the community page; the first call will re-sync", event="session")

    async def _reauthenticate(self, reason: str) -> None:
        log.warning("%s: logging in again", reason, event="reauth")
        self.stats.reauthenticated += 1
        self._use(await self.auth.login())

    async def _refresh_fwuid(self, expected: str | None) -> None:
        page = await self.http.get(f"{self.base_url}/s/", follow_redirects=True, timeout=self.config.request_timeout)
        if "/login" in str(page.url):
            await self._reauthenticate("session expired while re-reading the fwuid")
            return
        self._set_fwuid(find_fwuid(page.text) or expected)

    def _set_fwuid(self, fwuid: str | None) -> None:
        assert self.session is not None
        log.info("fwuid changed %s -> %s", self.session.fwuid, fwuid, event="fwuid")
        self.session.fwuid = fwuid

    def _timeout(self, action: AuraAction) -> float:
        if action.kind == "search":
            return self.config.search_timeout
        return self.config.request_timeout

    async def call(self, action: AuraAction) -> Any:
        """The action's returnValue; `ActionError` for a portal error, `RequestFailedError` after retries.

        Every failed attempt goes through `storeflow.http.policy.decide`; 429s count apart from the
        other retryable failures (timeouts, 5xx, truncated bodies), each up to MAX_RETRIES.
        """
        session = await self.connect()
        policy = self.config.retry_policy(self.throttle.policy.interval(action.kind))
        reauthed = False
        resynced = attempt = limited = 0
        while True:
            await self.throttle.abefore(action.kind)
            self.counter += 1
            self.stats.calls += 1
            session = self.session or session
            request = build_request(action, self.counter, session.fwuid or "", session.token)
            try:
                response = await self.http.post(
                    f"{self.base_url}{request.path}",
                    params=request.query,
                    data=request.form,
                    timeout=self._timeout(action),
                    follow_redirects=False,
                )
            except httpx.HTTPError as exc:
                answer = failed_call(exc)
            else:
                answer = read_answer(response)
            if answer.cause is None:
                return answer.value
            rate_limited = answer.cause is Cause.RATE_LIMITED
            if rate_limited:
                self.stats.rate_limited += 1
                self.throttle.stats.rate_limited += 1
            decision = decide(
                answer.cause,
                policy,
                attempt=(limited if rate_limited else attempt) + 1,
                retry_after=answer.retry_after,
                reauthenticated=reauthed,
                resynced=self._resyncs_spent(answer, resynced, policy.max_resyncs),
            )
            if rate_limited:
                log.warning("429 on %s: %s", action.name, decision.reason, event="rate_limit")
            if decision.action is Action.RETRY:
                if rate_limited:
                    limited += 1
                    self.throttle.push_back(decision.delay)
                else:
                    attempt += 1
                    self._back_off(action, attempt, decision.delay, answer.what)
            elif decision.action is Action.REAUTHENTICATE:
                reauthed = True
                what = answer.what if answer.error else f"{answer.what} from the Aura endpoint"
                await self._reauthenticate(what)
            elif decision.action is Action.RESYNC:
                self.stats.resynced += 1
                expected = answer.error.expected if isinstance(answer.error, ClientOutOfSyncError) else None
                if resynced:  # the page still served the old fwuid: take the one the server says it expects
                    self._set_fwuid(expected)
                else:
                    await self._refresh_fwuid(expected)
                resynced += 1
            elif decision.action is Action.STOP:
                raise RateLimitStop(f"Hallmark Connect rate limit: {decision.reason}")
            elif isinstance(answer.error, ActionError):
                raise answer.error
            elif rate_limited:
                raise RequestFailedError(f"{action.name}: still rate limited after {limited} waits")
            else:
                raise RequestFailedError(f"{action.name}: {answer.failed}") from answer.error

    def _resyncs_spent(self, answer: Answer, resynced: int, most: int) -> int:
        """Re-reads of the fwuid spent; the second one adopts the fwuid the server says it expects, so
        it is spent already when the server names none, or the one that was sent."""
        if not resynced or not isinstance(answer.error, ClientOutOfSyncError):
            return resynced
        expected = answer.error.expected
        sent = self.session.fwuid if self.session else None
        return resynced if expected and expected != sent else max(resynced, most)

    def _back_off(self, action: AuraAction, attempt: int, delay: float, why: str) -> None:
        self.stats.retries += 1
        log.warning("%s on %s; retry %d in %.1fs", why, action.name, attempt, delay, event="retry")
        self.throttle.push_back(delay)
