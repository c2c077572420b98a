"""`storeflow doctor`: one line per check, with how to fix what fails."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from storeflow.browser import SessionVault, find_browser, launch_options
from storeflow.errors import StoreflowError
from storeflow.fmt import format_age
from storeflow.settings import placeholder_warning

if TYPE_CHECKING:
    from storeflow.context import AppContext
    from storeflow.settings import Settings


@dataclass(frozen=True)
class Check:
    name: str
    status: Literal["ok", "warn", "fail"]
    detail: str


async def _launch_probe(path: str) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(**launch_options(path, True).as_kwargs())
        page = await browser.new_page()
        await page.set_content("<title>ok</title>")
        await browser.close()


def secrets_check(settings: Settings) -> Check:
    """Placeholder and public default secrets: refused in staging/production, a warning elsewhere."""
    if settings.APP_ENVIRONMENT in {"staging", "production"}:
        try:
            settings.check_production_secrets()
        except StoreflowError as exc:
            return Check("secrets", "fail", str(exc))
    public = settings.public_default_secrets()
    if public:
        return Check("secrets", "warn", "; ".join(placeholder_warning(name) for name in public))
    return Check("secrets", "ok", "no placeholder or public default secret in use")


def run_checks(ctx: AppContext) -> list[Check]:
    checks: list[Check] = []
    try:
        settings = ctx.settings
        where = str(settings.config_path) if settings.config_path else "no TOML file (defaults)"
        checks.append(Check("config", "ok", f"valid ({where})"))
    except StoreflowError as exc:
        return [Check("config", "fail", str(exc))]
    checks.append(secrets_check(settings))

    try:
        db = ctx.database()
        checks.append(Check("database", "ok", f"reachable and migrated ({db.kind})"))
    except StoreflowError as exc:
        checks.append(Check("database", "fail", f"{exc} — set DATABASE_URL or unset it to use the embedded one"))

    try:
        path = find_browser(settings.STOREFLOW_BROWSER)
        try:
            asyncio.run(asyncio.wait_for(_launch_probe(path), 60))
            checks.append(Check("browser", "ok", f"{path} launches"))
        except Exception as exc:
            checks.append(Check("browser", "fail", f"{path} found but does not launch: {exc}"))
    except StoreflowError as exc:
        checks.append(Check("browser", "fail", str(exc)))

    vault, key = SessionVault(settings.SESSION_FILE.parent), settings.SESSION_FILE.stem
    hallmark_age = vault.age_seconds(key)
    checks.append(
        Check(
            "session hallmark",
            "ok" if hallmark_age is not None else "warn",
            f"{settings.SESSION_FILE}: {format_age(hallmark_age, 'missing')}"
            + ("" if hallmark_age is not None else " (the next run logs in with MFA)"),
        )
    )
    profiles = SessionVault(settings.config.crm.profiles_dir)
    for store in settings.config.crm.stores:
        age = profiles.age_seconds(store.key)
        hint = "" if age is not None else f" — run `crm_download bootstrap --crm {store.crm} --store {store.code}`"
        checks.append(
            Check(
                f"session {store.key}",
                "ok" if age is not None else "warn",
                f"{profiles.path(store.key)}: {format_age(age, 'missing')}{hint}",
            )
        )
        missing = [n for n in (store.username_env, store.password_env) if not settings.env_value(n)]
        if missing:
            checks.append(
                Check(f"credentials {store.key}", "fail", f"set {', '.join(missing)} in the environment or .env")
            )
    checks += shopify_scope_checks(settings)
    return checks


def shopify_scope_checks(settings: Settings) -> list[Check]:
    """Per [[esl.shops]] entry: the token works and grants the scopes product webhooks need."""
    import httpx

    from storeflow.esl.admin import REQUIRED_SCOPES, AdminClient, AdminConfig, admin_shops

    checks: list[Check] = []
    for entry in admin_shops(settings):
        name = f"shopify {entry.shop}"
        try:
            with httpx.Client(timeout=settings.REQUEST_TIMEOUT_SECONDS) as http:
                granted = AdminClient(
                    http, AdminConfig.from_settings(settings, entry.shop), max_attempts=3
                ).access_scopes()
        except StoreflowError as exc:
            checks.append(Check(name, "fail", str(exc)))
            continue
        missing = [s for s in REQUIRED_SCOPES if s not in granted]
        if missing:
            checks.append(
                Check(
                    name,
                    "fail",
                    f"the app lacks access scope {', '.join(missing)}: product webhooks never arrive and "
                    "reconciliation cannot read them; add it to the app's scopes and reinstall",
                )
            )
        else:
            checks.append(Check(name, "ok", f"scopes {', '.join(REQUIRED_SCOPES)} granted"))
    return checks
