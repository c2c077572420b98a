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
from typing import Any

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
    Failure,
    backoff_delay,
    classify_exception,
    classify_status,
    decide_retry_after,
    parse_retry_after,
)
from storeflow.http.throttle import Throttle
from storeflow.logs import get_logger
from storeflow.settings import Settings

log = get_logger("api")


class RequestFailedError(Exception):
    """One record could not be fetched (after retries); the run goes on with the next."""


@dataclass
class ClientStats:
    calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    reauthenticated: int = 0
    resynced: int = 0


class AuraClient:
    """Calls Apex actions on the community; ``http`` is injected (tests may pass a MockTransport client)."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient, auth: Authenticator, throttle: Throttle) -> None:
        self.settings = settings
        self.http = http
        self.auth = auth
        self.throttle = throttle
        self.session: PortalSession | None = None
        self.counter = 0
        self.stats = ClientStats()

    @property
    def base_url(self) -> str:
        return self.settings.BASE_URL.rstrip("/")

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
        page = await self.http.get(
            f"{self.base_url}/s/", follow_redirects=True, timeout=self.settings.REQUEST_TIMEOUT_SECONDS
        )
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
            return self.settings.SEARCH_TIMEOUT_SECONDS
        return self.settings.REQUEST_TIMEOUT_SECONDS

    async def call(self, action: AuraAction) -> Any:
        """The action's returnValue; `ActionError` for a portal error, `RequestFailedError` after retries."""
        session = await self.connect()
        reauthed = False
        resynced = 0
        attempt = limited = 0
        max_retries = self.settings.MAX_RETRIES
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
                if classify_exception(exc) is Failure.TRANSIENT and attempt < max_retries:
                    attempt += 1
                    self._back_off(action, attempt, f"{type(exc).__name__}")
                    continue
                raise RequestFailedError(f"{action.name}: {type(exc).__name__}: {exc}") from exc
            status = response.status_code
            if status == 429:
                self.stats.rate_limited += 1
                self.throttle.stats.rate_limited += 1
                decision = decide_retry_after(
                    parse_retry_after(response.headers.get("Retry-After")),
                    self.settings.RETRY_AFTER_CAP_SECONDS,
                    backoff_delay(limited + 1, initial=max(1.0, self.throttle.policy.interval(action.kind))),
                )
                log.warning("429 on %s: %s", action.name, decision.reason, event="rate_limit")
                if decision.stop:
                    raise RateLimitStop(f"Hallmark Connect rate limit: {decision.reason}")
                limited += 1
                if limited > max_retries:
                    raise RequestFailedError(f"{action.name}: still rate limited after {limited - 1} waits")
                self.throttle.push_back(decision.wait)
                continue
            location = response.headers.get("location", "")
            if status == 401 or (300 <= status < 400 and "login" in location.lower()):
                if reauthed:
                    raise RequestFailedError(f"{action.name}: HTTP {status} again after logging in")
                reauthed = True
                await self._reauthenticate(f"HTTP {status} from the Aura endpoint")
                continue
            # the open-source Aura server sends its session and framework events with HTTP 404, Salesforce
            # sites with 200: the event decides, whatever the status
            failure = None if is_framework_event(response.text) else classify_status(status)
            if failure is Failure.TRANSIENT and attempt < max_retries:
                attempt += 1
                self._back_off(action, attempt, f"HTTP {status}")
                continue
            if failure is not None:
                raise RequestFailedError(f"{action.name}: HTTP {status}")
            try:
                result = parse_response(response.text)
                if not result.has_action:
                    raise MalformedResponseError("the answer carries no result for the action")
                return result.value
            except (InvalidSessionError, BadTokenError) as exc:
                if reauthed:
                    raise RequestFailedError(f"{action.name}: {exc} (again after logging in)") from exc
                reauthed = True
                await self._reauthenticate(str(exc))
            except ClientOutOfSyncError as exc:
                sent = (self.session or session).fwuid
                if resynced >= 2 or (resynced and (not exc.expected or exc.expected == sent)):
                    raise RequestFailedError(f"{action.name}: client out of sync again after re-reading fwuid") from exc
                self.stats.resynced += 1
                if resynced:  # the page still served the old fwuid: take the one the server says it expects
                    self._set_fwuid(exc.expected)
                else:
                    await self._refresh_fwuid(exc.expected)
                resynced += 1
            except MalformedResponseError as exc:
                if attempt >= max_retries:
                    raise RequestFailedError(f"{action.name}: {exc}") from exc
                attempt += 1
                self._back_off(action, attempt, str(exc))
            except ActionError:
                raise

    def _back_off(self, action: AuraAction, attempt: int, why: str) -> None:
        delay = backoff_delay(attempt, initial=max(0.5, self.throttle.policy.interval(action.kind)), maximum=60.0)
        self.stats.retries += 1
        log.warning("%s on %s; retry %d in %.1fs", why, action.name, attempt, delay, event="retry")
        self.throttle.push_back(delay)
