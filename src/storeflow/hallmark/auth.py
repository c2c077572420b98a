"""Hallmark Connect login: Playwright for the sign-on + MFA only, then a saved storage state.

Landing page -> "Retailer Login" -> PingOne sign-on (password on the same page or
a second step) -> MFA -> ``/secur/frontdoor.jsp`` -> ``/s/``. The storage state
(cookies + localStorage, which carries the Aura token) goes to SESSION_FILE with
mode 0600; later runs reuse it without a browser while ``/s/`` still loads.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from storeflow.browser import launch, vault_for_file
from storeflow.errors import ConfigError, StoreflowError, UnavailableError
from storeflow.hallmark.aura import TOKEN_KEY, find_fwuid, find_token_in_page
from storeflow.logs import get_logger, register_secrets
from storeflow.otp import fresh_code, read_code, webhook_answer

if TYPE_CHECKING:
    from storeflow.settings import Settings

log = get_logger("auth")

CODE_INPUT = (
    'input[name="code"], input[name="verificationCode"], input[name="otp"], input[autocomplete="one-time-code"]'
)
USERNAME_INPUT = 'input[name="username"]'
PASSWORD_INPUT = 'input[name="password"], input[type="password"]'
SUBMIT_RE = re.compile(r"^\s*(Sign On|Sign In|Next)\s*$", re.I)
STEP_TIMEOUT = 30.0


@dataclass
class PortalSession:
    """What the Aura client needs: cookies, token and fwuid (the browser is closed by now)."""

    base_url: str
    cookies: list[dict[str, Any]]
    token: str
    fwuid: str | None
    from_saved_state: bool = False


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def token_from_state(state: dict[str, Any], base_url: str) -> str | None:
    """The Aura token from a storage state's localStorage (the base URL's origin first)."""
    origins = [o for o in state.get("origins") or [] if isinstance(o, dict)]
    wanted = origin_of(base_url)
    origins.sort(key=lambda o: o.get("origin") != wanted)
    for entry in origins:
        for item in entry.get("localStorage") or []:
            if item.get("name") == TOKEN_KEY and item.get("value"):
                return str(item["value"])
    return None


def cookie_jar(cookies: list[dict[str, Any]]) -> httpx.Cookies:
    jar = httpx.Cookies()
    for c in cookies:
        jar.set(str(c["name"]), str(c["value"]), domain=str(c.get("domain") or "").lstrip("."), path=c.get("path", "/"))
    return jar


# ---------------------------------------------------------------- configuration


def _missing(settings: Settings, *names: str) -> str | None:
    """The error `Settings.require` gives for ``names``, None when they are all set (raised when needed)."""
    try:
        settings.require(*names)
    except ConfigError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class MfaConfig:
    """Where the one-time code comes from (MFA_METHOD and what that method needs)."""

    method: str = "manual"
    webhook_url: str | None = None
    totp_secret: SecretStr | None = None
    webhook_timeout: float = 300.0
    missing: str | None = None  # the error for a method whose setting is not set

    @classmethod
    def from_settings(cls, settings: Settings) -> MfaConfig:
        needs = {"webhook": "N8N_WEBHOOK_URL", "totp": "MFA_TOTP_SECRET"}.get(settings.MFA_METHOD)
        return cls(
            method=settings.MFA_METHOD,
            webhook_url=settings.N8N_WEBHOOK_URL,
            totp_secret=settings.MFA_TOTP_SECRET,
            webhook_timeout=settings.MFA_WEBHOOK_TIMEOUT_SECONDS,
            missing=_missing(settings, needs) if needs else None,
        )


@dataclass(frozen=True)
class AuthConfig:
    """What the login and the saved-session check read from the settings."""

    base_url: str
    session_file: Path
    request_timeout: float = 30.0
    browser: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    mfa: MfaConfig = MfaConfig()
    missing: str | None = None  # the error a login gives when HALLMARK_USERNAME / HALLMARK_PASSWORD is not set

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthConfig:
        return cls(
            base_url=settings.BASE_URL.rstrip("/"),
            session_file=settings.SESSION_FILE,
            request_timeout=settings.REQUEST_TIMEOUT_SECONDS,
            browser=settings.STOREFLOW_BROWSER,
            username=settings.HALLMARK_USERNAME,
            password=settings.HALLMARK_PASSWORD,
            mfa=MfaConfig.from_settings(settings),
            missing=_missing(settings, "HALLMARK_USERNAME", "HALLMARK_PASSWORD"),
        )


# ---------------------------------------------------------------- MFA codes


class MfaSource:
    """Where the one-time code comes from: ``manual`` prompt, ``webhook`` poll or ``totp``."""

    def __init__(self, config: MfaConfig, prompt: Callable[[str], str] | None = None) -> None:
        if config.missing:
            raise ConfigError(config.missing)
        self.config = config
        self.method = config.method
        self.prompt = prompt
        self._stale: str | None = None
        self._prompted_at = 0.0

    async def before_prompt(self) -> None:
        """Called before the sign-on is submitted: remember the webhook's current (stale) code."""
        self._prompted_at = time.time()
        if self.method != "webhook":
            return
        try:
            async with httpx.AsyncClient() as http:
                payload = await webhook_answer(http, self.config.webhook_url or "")
        except httpx.HTTPError:
            payload = None
        if isinstance(payload, dict) and payload.get("code"):
            self._stale = str(payload["code"]).strip()

    async def code(self) -> str:
        if self.method == "totp":
            import pyotp

            secret = self.config.totp_secret.get_secret_value() if self.config.totp_secret else ""
            try:
                value: str = pyotp.TOTP(secret.replace(" ", "")).now()
            except ValueError as exc:
                raise ConfigError(f"MFA_TOTP_SECRET is not a usable base32 TOTP secret: {exc}") from None
        elif self.method == "webhook":
            value = await self._wait_for_webhook()
        else:
            ask = self.prompt or console_prompt
            value = (await asyncio.to_thread(ask, "Enter MFA code: ")).strip()
        register_secrets([value])
        return value

    async def _wait_for_webhook(self) -> str:
        deadline = time.monotonic() + self.config.webhook_timeout
        log.info("waiting for the MFA code from the webhook", event="mfa")
        async with httpx.AsyncClient() as http:
            while time.monotonic() < deadline:
                try:
                    payload = await webhook_answer(http, self.config.webhook_url or "")
                except httpx.HTTPError as exc:
                    log.warning("MFA webhook unreachable: %s", exc, event="mfa")
                    payload = None
                code = fresh_code(payload, self._stale, self._prompted_at)
                if code:
                    return code
                await asyncio.sleep(0.5)
        raise StoreflowError(
            f"no new MFA code from N8N_WEBHOOK_URL within {self.config.webhook_timeout:.0f}s "
            "(raise MFA_WEBHOOK_TIMEOUT_SECONDS or use MFA_METHOD=manual)"
        )


def console_prompt(text: str) -> str:
    return read_code(text).strip()


# ---------------------------------------------------------------- login


class Authenticator:
    """Gives the Aura client a session: the saved one while valid, else a full browser login."""

    def __init__(self, settings: Settings, headless: bool = True, prompt: Callable[[str], str] | None = None) -> None:
        self.config = AuthConfig.from_settings(settings)
        self.headless = headless
        self.prompt = prompt
        self.logins = 0
        self.reused = 0

    @property
    def base_url(self) -> str:
        return self.config.base_url

    async def session(self) -> PortalSession:
        saved = await self.saved_session()
        if saved is not None:
            self.reused += 1
            return saved
        return await self.login()

    async def saved_session(self) -> PortalSession | None:
        """The stored storage state if ``/s/`` still loads with it (checked with httpx, no browser)."""
        vault, key = vault_for_file(self.config.session_file)
        state = vault.load(key)
        if state is None:
            return None
        token = token_from_state(state, self.base_url)
        cookies = list(state.get("cookies") or [])
        if not token or not cookies:
            log.info("saved session has no Aura token; logging in", event="session")
            return None
        try:
            async with httpx.AsyncClient(cookies=cookie_jar(cookies), follow_redirects=True) as http:
                page = await http.get(f"{self.base_url}/s/", timeout=self.config.request_timeout)
        except httpx.HTTPError as exc:
            raise UnavailableError(f"cannot reach {self.base_url}: {exc}") from exc
        if "/login" in str(page.url) or page.status_code >= 400:
            log.info("saved session expired (landed on %s); logging in", page.url.path, event="session")
            return None
        register_secrets([token])
        fwuid = find_fwuid(page.text)
        token = find_token_in_page(page.text) or token
        log.info("reusing the saved session from %s", self.config.session_file, event="session")
        return PortalSession(self.base_url, cookies, token, fwuid, from_saved_state=True)

    async def login(self) -> PortalSession:
        """A full login in Chromium; saves the storage state to SESSION_FILE (0600)."""
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import async_playwright

        if self.config.missing:
            raise ConfigError(self.config.missing)
        mfa = MfaSource(self.config.mfa, self.prompt)
        log.info("logging in to %s (MFA %s)", self.base_url, mfa.method, event="login")
        try:
            async with async_playwright() as pw:
                browser = await launch(pw, self.config.browser, headless=self.headless)
                try:
                    context = await browser.new_context()
                    page = await context.new_page()
                    page.set_default_timeout(STEP_TIMEOUT * 1000)
                    session = await self._login_steps(page, mfa)
                    state = await context.storage_state()
                finally:
                    await browser.close()
        except PlaywrightError as exc:
            raise StoreflowError(f"login failed in the browser: {str(exc).splitlines()[0]}") from exc
        vault, key = vault_for_file(self.config.session_file)
        vault.save(key, dict(state))
        session.cookies = [dict(c) for c in state.get("cookies") or []]
        self.logins += 1
        log.info("logged in; session saved to %s", self.config.session_file, event="login")
        return session

    async def _login_steps(self, page: Any, mfa: MfaSource) -> PortalSession:
        password = self.config.password.get_secret_value() if self.config.password else ""
        await page.goto(f"{self.base_url}/")
        await page.locator('[aria-label="Retailer Login"]').first.click()
        await page.wait_for_selector(USERNAME_INPUT)
        await mfa.before_prompt()
        await page.fill(USERNAME_INPUT, self.config.username or "")
        password_box = page.locator(PASSWORD_INPUT)
        if not await password_box.count():
            log.info("sign-on asks for the password on a second step", event="login")
            await _submit(page)
            await page.wait_for_selector(PASSWORD_INPUT)
        await page.locator(PASSWORD_INPUT).first.fill(password)
        await _submit(page)
        outcome = await _wait_for_any(page, {"mfa": CODE_INPUT, "error": '[role="alert"]'}, allow_home=True)
        if outcome == "error":
            raise ConfigError("the sign-on page rejected HALLMARK_USERNAME / HALLMARK_PASSWORD")
        if outcome == "mfa":
            code = await mfa.code()
            await page.locator(CODE_INPUT).first.fill(code)
            await page.get_by_role("button", name=re.compile("verify", re.I)).first.click()
            outcome = await _wait_for_any(page, {"error": '[role="alert"]'}, allow_home=True)
            if outcome == "error":
                raise StoreflowError(f"the MFA code was not accepted (MFA_METHOD={mfa.method})")
        if "/login" in page.url:
            raise StoreflowError(f"login ended on {page.url} instead of the community home /s/")
        token = await page.evaluate("key => window.localStorage.getItem(key)", TOKEN_KEY)
        if not token:
            raise StoreflowError(f"no Aura token in localStorage under {TOKEN_KEY} after login")
        register_secrets([str(token)])
        fwuid = find_fwuid(await page.content())
        return PortalSession(self.base_url, [], str(token), fwuid)


async def _submit(page: Any) -> None:
    button = page.get_by_role("button", name=SUBMIT_RE)
    if await button.count():
        await button.first.click()
    else:
        await page.locator('input[type="submit"], button[type="submit"]').first.click()


async def _wait_for_any(page: Any, selectors: dict[str, str], allow_home: bool) -> str:
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        path = urlsplit(page.url).path
        if allow_home and path.startswith("/s/") and "/login" not in path:
            with_token = await page.evaluate("key => window.localStorage.getItem(key)", TOKEN_KEY)
            if with_token:
                return "home"
        for name, selector in selectors.items():
            if await page.locator(selector).count():
                return name
        await asyncio.sleep(0.1)
    raise StoreflowError(f"login step timed out after {STEP_TIMEOUT:.0f}s on {page.url}")
