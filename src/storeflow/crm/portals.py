"""The two portals' clients: log in (with OTP), probe a stored session, download a report.

TumbleDry: browser mode (home -> overdue popup -> `a#achrOrderReport` -> iframe `#ifrmReport`
-> request report -> poll the requests table -> `page.expect_download()`) and API mode
(token from the iframe URL -> `GET /reports/order-report`). UClean: the token the login page
keeps in localStorage, then export (GET), generate (POST) or the paged tax-report API.
The same code talks to the real portals and to the sandbox; only base URLs differ.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import httpx

from storeflow.crm.files import canonical_name, extension_for
from storeflow.crm.windows import Window
from storeflow.errors import ConfigError, StoreflowError
from storeflow.files import make_private_dir, private_target, write_json_atomic
from storeflow.http.policy import (
    Action,
    Backoff,
    Cause,
    RetryPolicy,
    cause_of,
    cause_of_error,
    decide,
    parse_retry_after,
)
from storeflow.logs import get_logger, register_secrets
from storeflow.paths import UnsafePathError, inside, safe_extension, shown

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Download, Page

    from storeflow.settings import CrmStore, Settings

StorageState = dict[str, Any]
OtpSource = Callable[[], Awaitable[str]]
TD_MODES = ("browser", "api")
UC_MODES = ("export", "generate", "api")
REPORT_TYPES = {"td": "OrderReport", "uc": "GST"}
TD_DISPLAY = "%d %b %Y"


class SessionExpired(StoreflowError):
    """The stored session no longer works (login page, 401/403)."""


class DownloadError(StoreflowError):
    pass


@dataclass
class Downloaded:
    path: Path
    report_type: str
    mode: str
    state: StorageState | None  # the session after the download (persisted cookies)


BACKOFF = Backoff(initial=0.5, maximum=10.0)
SESSION_STATUSES = frozenset({401, 403})  # both portals answer an expired session so


def retry_policy(max_retries: int, retry_after_cap: float = 300.0) -> RetryPolicy:
    """Transient failures and 429s of one request share MAX_RETRIES; a 429 waits its Retry-After up to the cap."""
    return RetryPolicy(max_retries=max_retries, backoff=BACKOFF, retry_after_cap=retry_after_cap)


@dataclass(frozen=True)
class PortalConfig:
    """What the portal clients read from the settings."""

    td_base_url: str = "https://subs.quickdrycleaning.com"
    td_reports_url: str = "https://reports.quickdrycleaning.com"
    uc_base_url: str = "https://store.ucleanlaundry.com"
    download_timeout: float = 60.0
    max_retries: int = 3
    retry_after_cap: float = 300.0
    # the credential variables the stores name in the TOML file, as the environment or .env sets them
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings, stores: Iterable[CrmStore] = ()) -> PortalConfig:
        crm = settings.config.crm
        names = {n for s in (*crm.stores, *stores) for n in (s.username_env, s.password_env)}
        return cls(
            td_base_url=crm.td_base_url,
            td_reports_url=crm.td_reports_url,
            uc_base_url=crm.uc_base_url,
            download_timeout=crm.download_timeout_seconds,
            max_retries=settings.MAX_RETRIES,
            retry_after_cap=settings.RETRY_AFTER_CAP_SECONDS,
            env={n: v for n in names if (v := settings.env_value(n))},
        )

    @property
    def retry(self) -> RetryPolicy:
        return retry_policy(self.max_retries, self.retry_after_cap)


def credentials(config: PortalConfig, store: CrmStore) -> tuple[str, str]:
    user = config.env.get(store.username_env)
    password = config.env.get(store.password_env)
    missing = [n for n, v in ((store.username_env, user), (store.password_env, password)) if not v]
    if missing:
        raise ConfigError(f"store {store.key}: set {' and '.join(missing)} (credentials named in the TOML file)")
    assert user is not None and password is not None
    register_secrets([password])
    return user, password


def check_mode(store: CrmStore) -> str:
    modes = TD_MODES if store.crm == "td" else UC_MODES
    if store.mode not in modes:
        raise ConfigError(f"store {store.key}: mode {store.mode!r} is not one of {', '.join(modes)}")
    return store.mode


def cookie_header(state: StorageState | None, url: str) -> str:
    """The Cookie header a browser with this storage state would send to ``url``."""
    host = urlparse(url).hostname or ""
    pairs = []
    for cookie in (state or {}).get("cookies", []):
        domain = str(cookie.get("domain", "")).lstrip(".")
        if domain and (host == domain or host.endswith("." + domain)):
            pairs.append(f"{cookie['name']}={cookie['value']}")
    return "; ".join(pairs)


def local_storage_token(state: StorageState | None, base_url: str) -> str | None:
    """UClean keeps ``Bearer <jwt>`` in localStorage (``token`` or ``authToken``)."""
    origin = "{0.scheme}://{0.netloc}".format(urlparse(base_url))
    for entry in (state or {}).get("origins", []):
        if entry.get("origin") != origin:
            continue
        items = {i.get("name"): i.get("value") for i in entry.get("localStorage", [])}
        for name in ("token", "authToken"):
            value = items.get(name)
            if value:
                value = str(value).strip().strip('"')
                return value[7:] if value.lower().startswith("bearer ") else value
    return None


def jwt_expiry(token: str) -> float | None:
    try:
        part = token.split(".")[1]
        payload = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


def iframe_token(src: str) -> str:
    token = parse_qs(urlparse(src).query).get("token", [""])[0]
    if not token:
        raise DownloadError(f"the report iframe carries no token: {src[:80]}")
    register_secrets([token])
    return token


_IFRAME = re.compile(r"<iframe[^>]*id=[\"']ifrmReport[\"'][^>]*src=[\"']([^\"']+)[\"']", re.IGNORECASE)


def filename_from(headers: httpx.Headers) -> str | None:
    disposition = headers.get("content-disposition")
    if not disposition:
        return None
    msg = Message()
    msg["content-disposition"] = disposition
    name = msg.get_filename()
    return str(name) if name else None


def next_wait(
    policy: RetryPolicy,
    cause: Cause,
    attempt: int,
    what: str,
    *,
    status: int | None = None,
    detail: str = "",
    retry_after: str | None = None,
    error: BaseException | None = None,
) -> float:
    """Seconds to wait before attempt ``attempt + 1`` of ``what``, as `storeflow.http.policy.decide` says.

    Otherwise raises: SessionExpired (401/403: log in again), DownloadError when the retries are
    spent or the answer is a refusal, and at once for a Retry-After past the cap, instead of
    hammering the portal.
    """
    decision = decide(cause, policy, attempt=attempt, retry_after=parse_retry_after(retry_after))
    if decision.action is Action.RETRY:
        return decision.delay
    if decision.action is Action.REAUTHENTICATE:
        raise SessionExpired(f"{what} answered {status}")
    if decision.action is Action.STOP:
        raise DownloadError(f"{what} answered 429 (rate limited): {decision.reason}; try again later")
    failed = DownloadError(f"{what} answered {status}: {detail}" if status is not None else f"{what}: {detail}")
    if error is not None:
        raise failed from error
    raise failed


async def request_with_retry(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    attempts: int,
    retry_after_cap: float = 300.0,
    **kwargs: Any,
) -> httpx.Response:
    """One HTTP call; transient failures (5xx, timeouts) retried up to ``attempts`` times with the shared
    backoff, 429s after their Retry-After (up to ``retry_after_cap``); 401/403 raise SessionExpired."""
    what = f"{method} {urlparse(url).path}"
    policy = retry_policy(attempts, retry_after_cap)
    for attempt in range(1, attempts + 2):
        try:
            response = await client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            detail = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(next_wait(policy, cause_of_error(exc), attempt, what, detail=detail, error=exc))
            continue
        cause = cause_of(response.status_code, session_statuses=SESSION_STATUSES)
        if cause is None:
            return response
        wait = next_wait(
            policy,
            cause,
            attempt,
            what,
            status=response.status_code,
            detail=response.text[:200],
            retry_after=response.headers.get("retry-after"),
        )
        await asyncio.sleep(wait)
    raise DownloadError(f"{what}: retries exhausted")


class PortalClient:
    """What both portals share: their config, the store, browser access, HTTP."""

    def __init__(
        self,
        config: PortalConfig,
        store: CrmStore,
        http: httpx.AsyncClient,
        browser: Callable[[], Awaitable[Browser]],
    ) -> None:
        self.config = config
        self.store = store
        self.http = http
        self.browser = browser
        self.timeout = config.download_timeout
        self.log = get_logger("crm", store.key)

    async def new_context(self, state: StorageState | None) -> BrowserContext:
        browser = await self.browser()
        context = await browser.new_context(storage_state=state, accept_downloads=True)  # type: ignore[arg-type]
        context.set_default_timeout(self.timeout * 1000)
        return context

    async def login(self, otp: OtpSource) -> StorageState:
        raise NotImplementedError

    async def probe(self, state: StorageState) -> bool:
        raise NotImplementedError

    async def download(self, state: StorageState, window: Window, folder: Path) -> Downloaded:
        raise NotImplementedError

    def target(self, window: Window, ext: str, folder: Path) -> Path:
        """The canonical path of this store's report in ``folder`` (created 0700); UnsafePathError when
        the served extension is not a report's or the path would leave ``folder``."""
        name = canonical_name(
            self.store.crm, REPORT_TYPES[self.store.crm], self.store.name, window.start, window.end, ext
        )
        make_private_dir(folder)
        return inside(folder, folder / name)

    def served_extension(self, content_type: str | None, filename: str | None, head: bytes) -> str:
        """The served file's extension, checked: a DownloadError naming the store and the file otherwise."""
        ext = extension_for(content_type, filename, head)
        try:
            return safe_extension(ext)
        except UnsafePathError as exc:
            raise DownloadError(f"{self.store.key}: the served file {shown(filename or '(no name)')}: {exc}") from exc

    async def save_download(self, download: Download, target: Path) -> Path:
        """Playwright's ``save_as`` into a private 0700 folder, then 0600 and renamed onto ``target``."""
        with private_target(target) as staged:
            await download.save_as(staged)
        return target


# ---------------------------------------------------------------- TumbleDry


class TumbleDryClient(PortalClient):
    @property
    def base(self) -> str:
        return self.config.td_base_url.rstrip("/")

    @property
    def reports_base(self) -> str:
        return self.config.td_reports_url.rstrip("/")

    async def login(self, otp: OtpSource) -> StorageState:
        user, password = credentials(self.config, self.store)
        context = await self.new_context(None)
        try:
            page = await context.new_page()
            await page.goto(self.store.login_url or f"{self.base}/Login")
            await page.fill("#txtUserId", user)
            await page.fill("#txtPassword", password)
            await page.fill("#txtBranchPin", self.store.code)
            await page.click("#btnLogin")
            await page.wait_for_load_state()
            if "frmverification" in page.url.lower():
                self.log.info("one-time code requested", event="bootstrap")
                code = await otp()
                register_secrets([code])
                await page.fill("#txtOTP, input[name*='otp' i]", code)
                await page.click("#btnVerify, input[type=submit]")
                await page.wait_for_load_state()
            if f"/{self.store.code}/app/home" not in page.url.lower():
                error = (
                    await page.locator("#lblError").text_content() if await page.locator("#lblError").count() else ""
                )
                raise StoreflowError(f"store {self.store.key}: login failed ({(error or page.url).strip()})")
            await page.locator("a#achrOrderReport").wait_for(state="attached")
            return await context.storage_state()  # type: ignore[return-value]
        finally:
            await context.close()

    async def _report_page(self, state: StorageState) -> httpx.Response:
        url = f"{self.base}/{self.store.code}/App/Reports/OrderReport.aspx"
        response = await request_with_retry(
            self.http,
            "GET",
            url,
            self.config.max_retries,
            self.config.retry_after_cap,
            headers={"Cookie": cookie_header(state, url)},
        )
        if response.is_redirect or "/login" in str(response.url).lower():
            raise SessionExpired(f"{self.store.key}: the portal sent the session to its login page")
        return response

    async def probe(self, state: StorageState) -> bool:
        try:
            response = await self._report_page(state)
        except SessionExpired:
            return False
        return bool(_IFRAME.search(response.text))

    async def download(self, state: StorageState, window: Window, folder: Path) -> Downloaded:
        if self.store.mode == "api":
            return await self._download_api(state, window, folder)
        return await self._download_browser(state, window, folder)

    async def _download_api(self, state: StorageState, window: Window, folder: Path) -> Downloaded:
        found = _IFRAME.search((await self._report_page(state)).text)
        if not found:
            raise DownloadError(f"{self.store.key}: OrderReport.aspx has no #ifrmReport iframe")
        token = iframe_token(found.group(1).replace("&amp;", "&"))
        rows: list[dict[str, Any]] = []
        page, size = 1, 200
        while True:
            self.log.info("reporting API page %d", page, event="download")
            response = await request_with_retry(
                self.http,
                "GET",
                f"{self.reports_base}/reports/order-report",
                self.config.max_retries,
                self.config.retry_after_cap,
                params={
                    "startDate": window.start.isoformat(),
                    "endDate": window.end.isoformat(),
                    "page": page,
                    "pageSize": size,
                    "expandData": "true",
                },
                headers={"Authorization": f"Bearer {token}"},
            )
            try:
                body = response.json()
            except ValueError as exc:
                raise DownloadError(f"{self.store.key}: the reporting API sent malformed JSON: {exc}") from exc
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise DownloadError(f"{self.store.key}: the reporting API sent no list of rows")
            rows.extend(data)
            total = (body.get("pagination") or {}).get("total")
            if len(data) < size or (isinstance(total, int) and len(rows) >= total):
                break
            page += 1
        target = self.target(window, "json", folder)
        write_json_atomic(target, rows, private=True)
        return Downloaded(target, REPORT_TYPES["td"], "api", state)

    async def _download_browser(self, state: StorageState, window: Window, folder: Path) -> Downloaded:
        context = await self.new_context(state)
        try:
            page = await context.new_page()
            await page.goto(f"{self.base}/{self.store.code}/App/home")
            if "/login" in page.url.lower():
                raise SessionExpired(f"{self.store.key}: the portal sent the session to its login page")
            await self._dismiss_overdue(page)
            # the spec's legacy URL, reached the way a user does
            await page.click("a#achrOrderReport")
            await page.wait_for_url(re.compile(r"OrderReport\.aspx", re.IGNORECASE))
            src = await page.locator("#ifrmReport").get_attribute("src") or ""
            iframe_token(src)
            frame = page.frame_locator("#ifrmReport")
            await frame.locator("div.ant-spin").wait_for(state="hidden")
            if await frame.locator("#sessionExpired").count():
                raise SessionExpired(f"{self.store.key}: the reports app rejected the token")
            await frame.get_by_role("button", name="Download historical report").click()
            await frame.get_by_role("button", name="Generate Report").click()
            start, end = window.start.strftime(TD_DISPLAY), window.end.strftime(TD_DISPLAY)
            await frame.locator("input[placeholder^='From']").fill(start)
            await frame.locator("input[placeholder^='To']").fill(end)
            self.log.info("requesting report %s - %s", start, end, event="download")
            # the table lists requests newest first; an older request for the same dates may be there too
            rows = frame.locator("tr", has_text=f"{start} - {end}")
            before = await rows.count()
            await frame.get_by_role("button", name="Request Report").click()
            deadline = time.monotonic() + self.timeout
            try:
                while await rows.count() <= before:
                    if await frame.locator("#sessionExpired").count():
                        raise SessionExpired(f"{self.store.key}: the reports app session expired")
                    if time.monotonic() > deadline:
                        raise DownloadError(f"{self.store.key}: the report request did not appear in the table")
                    await asyncio.sleep(0.2)
                link = rows.first.locator("a[href*='order-reports']")
                await link.wait_for(state="visible", timeout=max(1.0, deadline - time.monotonic()) * 1000)
            except (SessionExpired, DownloadError):
                raise
            except Exception as exc:
                if await frame.locator("#sessionExpired").count():
                    raise SessionExpired(f"{self.store.key}: the reports app session expired") from exc
                raise DownloadError(
                    f"{self.store.key}: the report was not ready within {self.timeout:.0f}s (download_timeout_seconds)"
                ) from exc
            async with page.expect_download(timeout=self.timeout * 1000) as info:
                await link.click()
            download = await info.value
            failure = await download.failure()
            if failure:
                raise DownloadError(f"{self.store.key}: the download failed: {failure}")
            ext = self.served_extension(None, download.suggested_filename, b"")
            target = await self.save_download(download, self.target(window, ext, folder))
            new_state: StorageState = await context.storage_state()  # type: ignore[assignment]
            return Downloaded(target, REPORT_TYPES["td"], "browser", new_state)
        finally:
            await context.close()

    async def _dismiss_overdue(self, page: Page) -> None:
        popup = page.locator("#pnlOrderOverDuePopup")
        if await popup.count() and await popup.is_visible():
            self.log.info("closing the overdue-orders popup", event="download")
            close = popup.locator("button, input[type=button], a.close, .close").first
            if await close.count():
                await close.click()
            if await popup.is_visible():
                await page.evaluate("document.getElementById('pnlOrderOverDuePopup').style.display='none'")


# ---------------------------------------------------------------- UClean

# In the logged-in page: the API call with the app's own token, the body kept as a Blob URL.
_UC_FETCH_JS = """
async ({url, method, body}) => {
  const raw = localStorage.getItem("token") || localStorage.getItem("authToken") || "";
  const init = {method, headers: {Authorization: "Bearer " + raw.replace(/^Bearer\\s+/i, "")}};
  if (body !== null) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  let response;
  try { response = await fetch(url, init); } catch (e) { return {status: 0, error: String(e)}; }
  if (!response.ok) {
    return {status: response.status, error: (await response.text()).slice(0, 200),
            retryAfter: response.headers.get("retry-after")};
  }
  const blob = await response.blob();
  const found = /filename\\*?=(?:UTF-8'')?"?([^";]+)"?/i.exec(response.headers.get("content-disposition") || "");
  window.__storeflowDownload = {href: URL.createObjectURL(blob), name: found ? decodeURIComponent(found[1]) : ""};
  return {status: response.status, type: response.headers.get("content-type") || "", size: blob.size};
}
"""
# ... then saved the way the app saves it: an <a download> click (what page.expect_download() captures).
_UC_CLICK_JS = """
(fallback) => {
  const saved = window.__storeflowDownload;
  const a = document.createElement("a");
  a.href = saved.href;
  a.download = saved.name || fallback;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(saved.href), 60000);
}
"""


class UCleanClient(PortalClient):
    @property
    def base(self) -> str:
        return self.config.uc_base_url.rstrip("/")

    async def login(self, otp: OtpSource) -> StorageState:
        from playwright.async_api import Error as PlaywrightError

        user, password = credentials(self.config, self.store)
        context = await self.new_context(None)
        try:
            page = await context.new_page()
            await page.goto(self.store.login_url or f"{self.base}/login")
            await page.fill("#email", user)
            await page.fill("#password", password)
            await page.click("button[type=submit]")
            otp_box = page.locator("#otp")
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline:
                if "/dashboard" in page.url:
                    break
                if await otp_box.is_visible():
                    self.log.info("one-time code requested", event="bootstrap")
                    code = await otp()
                    register_secrets([code])
                    await otp_box.fill(code)
                    await page.click("#verifyOtp, #otpForm button[type=submit]")
                    await page.wait_for_url("**/dashboard", timeout=self.timeout * 1000)
                    break
                try:
                    message = await page.evaluate(
                        "() => { const e = document.querySelector('#loginError'); return e ? e.textContent : ''; }"
                    )
                except PlaywrightError:  # navigating to the dashboard right now
                    message = ""
                if message and message.strip():
                    raise StoreflowError(f"store {self.store.key}: login failed ({message.strip()})")
                await asyncio.sleep(0.1)
            await page.wait_for_load_state()
            state: StorageState = await context.storage_state()  # type: ignore[assignment]
            if not local_storage_token(state, self.base):
                raise StoreflowError(f"store {self.store.key}: login did not leave a token in localStorage")
            return state
        finally:
            await context.close()

    def _token(self, state: StorageState) -> str:
        token = local_storage_token(state, self.base)
        if not token:
            raise SessionExpired(f"{self.store.key}: no token in the stored session")
        expiry = jwt_expiry(token)
        if expiry is not None and expiry < time.time() + 60:
            raise SessionExpired(f"{self.store.key}: the stored token expired")
        register_secrets([token])
        return token

    async def probe(self, state: StorageState) -> bool:
        """The stored token is there and its ``exp`` is ahead. No request: UClean's only known APIs are
        its reports, and asking one for a report just to test the token would be a report run of its
        own. A token the server revoked earlier shows as a 401 on the download, which logs in again."""
        try:
            self._token(state)
        except SessionExpired:
            return False
        return True

    async def download(self, state: StorageState, window: Window, folder: Path) -> Downloaded:
        token = self._token(state)
        if self.store.mode == "api":
            return await self._download_api(state, {"Authorization": f"Bearer {token}"}, window, folder)
        return await self._download_in_page(state, window, folder)

    async def _download_in_page(self, state: StorageState, window: Window, folder: Path) -> Downloaded:
        """The SRS's export (GET) / generateGST (POST), captured with ``page.expect_download()``.

        A navigation cannot carry the ``Authorization`` header these APIs require, so the logged-in page
        does what the app does: ``fetch`` with its localStorage token, then a Blob saved through an
        ``<a download>`` click, which Playwright sees as the download.
        """
        mode = self.store.mode
        start, end = window.start.isoformat(), window.end.isoformat()
        request: dict[str, Any]
        if mode == "generate":
            request = {
                "url": f"{self.base}/api/v1/stores/generateGST?franchise=UCLEAN",
                "method": "POST",
                "body": {"from_date": start, "to_date": end},
            }
        else:
            query = f"type=GST&format=excel&from_date={start}&to_date={end}"
            request = {"url": f"{self.base}/api/v1/sales/export-report?{query}", "method": "GET", "body": None}
        path = urlparse(str(request["url"])).path
        context = await self.new_context(state)
        try:
            page = await context.new_page()
            await page.goto(f"{self.base}/dashboard")
            if "/login" in page.url.lower():
                raise SessionExpired(f"{self.store.key}: the portal sent the session to its login page")
            what = f"{request['method']} {path}"
            for attempt in range(1, self.config.max_retries + 2):
                answer: dict[str, Any] = await page.evaluate(_UC_FETCH_JS, request)
                status = int(answer.get("status") or 0)  # 0: fetch got no answer
                cause = cause_of(status or None, session_statuses=SESSION_STATUSES)
                if cause is None:
                    break
                wait = next_wait(
                    self.config.retry,
                    cause,
                    attempt,
                    what,
                    status=status,
                    detail=answer.get("error", ""),
                    retry_after=answer.get("retryAfter"),
                )
                await asyncio.sleep(wait)
            else:
                raise DownloadError(f"{what}: retries exhausted")
            self.log.info(
                "%s %s answered %s, saving through the page", request["method"], path, status, event="download"
            )
            async with page.expect_download(timeout=self.timeout * 1000) as info:
                await page.evaluate(_UC_CLICK_JS, f"GST_{start}_{end}")
            download = await info.value
            failure_text = await download.failure()
            if failure_text:
                raise DownloadError(f"{self.store.key}: the download failed: {failure_text}")
            served = Path(await download.path())
            with served.open("rb") as fh:
                head = fh.read(8)
            ext = self.served_extension(answer.get("type") or None, download.suggested_filename, head)
            target = await self.save_download(download, self.target(window, ext, folder))
            return Downloaded(target, REPORT_TYPES["uc"], mode, state)
        finally:
            await context.close()

    async def _download_api(
        self, state: StorageState, auth: dict[str, str], window: Window, folder: Path
    ) -> Downloaded:
        rows: list[dict[str, Any]] = []
        page, limit = 1, 20
        while True:
            response = await request_with_retry(
                self.http,
                "GET",
                f"{self.base}/api/v1/stores/report/tax-report",
                self.config.max_retries,
                self.config.retry_after_cap,
                params={
                    "from": window.start.isoformat(),
                    "to": window.end.isoformat(),
                    "page": page,
                    "limit": limit,
                    "sortBy": "invoice_date",
                    "sortOrder": "DESC",
                    "export": "false",
                    "franchise": "UCLEAN",
                },
                headers=auth,
            )
            try:
                data = response.json().get("data")
            except (ValueError, AttributeError) as exc:
                raise DownloadError(f"{self.store.key}: tax-report sent malformed JSON") from exc
            if not isinstance(data, list):
                raise DownloadError(f"{self.store.key}: tax-report page {page} is malformed (data is not a list)")
            rows.extend(data)
            if len(data) < limit:  # a short (or empty first) page ends the result
                break
            page += 1
        target = self.target(window, "json", folder)
        write_json_atomic(target, rows, private=True)
        return Downloaded(target, REPORT_TYPES["uc"], "api", state)


def client_for(
    config: PortalConfig, store: CrmStore, http: httpx.AsyncClient, browser: Callable[[], Awaitable[Browser]]
) -> PortalClient:
    check_mode(store)
    cls = TumbleDryClient if store.crm == "td" else UCleanClient
    return cls(config, store, http, browser)
