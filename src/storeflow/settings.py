"""The one settings object: environment variables and `.env`, plus the TOML structure file.

Variable names are the ones the three source specifications use, so an existing
`.env` keeps working. Non-secret structure (CRM stores, Hallmark store mapping)
lives in TOML (``--config`` / ``STOREFLOW_CONFIG`` / ``./storeflow.toml``); secrets
are only read from the environment and referenced from TOML by variable name.
Nothing else in storeflow reads ``os.environ``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storeflow.errors import ConfigError
from storeflow.jobs.schedules import ScheduleEntry
from storeflow.logs import get_logger, mask_url, mask_url_path

PLACEHOLDER_SECRETS = {
    "",
    "changeme",
    "change-me",
    "your_password",
    "your_username",
    "your_api_secret",
    "your_shopify_webhook_secret",
    "your_admin_password",
    "password",
    "secret",
}
# Hipoink's documented default sign (public: every Hipoink server starts with it); the one copy in src/
HIPOINK_DEFAULT_SIGN = "80805d794841f1b4"
# secrets whose default value is public (Hipoink's documented default sign), with the setting that puts them
# to use: placeholders outside the sandbox once that setting is set
PUBLIC_DEFAULT_SECRETS = {"HIPOINK_API_SECRET": (HIPOINK_DEFAULT_SIGN, "HIPOINK_API_BASE_URL")}
_log = get_logger("main")


def placeholder_warning(name: str) -> str:
    """What to tell the operator about a secret that still holds its public default."""
    return (
        f"{name} is the public default value (a placeholder anyone can read in the vendor's documentation): "
        "set your own before APP_ENVIRONMENT=staging/production, where it is refused"
    )


# ---------------------------------------------------------------- TOML structure


class CrmStore(BaseModel):
    """One CRM store account (spec 001 table 2.1)."""

    crm: Literal["td", "uc"]
    code: str
    name: str
    username_env: str
    password_env: str
    login_url: str | None = None
    # td: "browser" (legacy page -> iframe -> request/poll/download) or "api";
    # uc: "export" (GET export-report XLSX), "generate" (POST generateGST), "api" (paged tax-report)
    mode: str = "browser"
    otp_required: bool = False
    otp_webhook_url: str | None = None
    enabled: bool = True

    @property
    def key(self) -> str:
        return f"{self.crm}_{self.code}"


class CrmConfig(BaseModel):
    td_base_url: str = "https://subs.quickdrycleaning.com"
    td_reports_url: str = "https://reports.quickdrycleaning.com"
    uc_base_url: str = "https://store.ucleanlaundry.com"
    download_dir: Path = Path("./downloads")
    profiles_dir: Path = Path("./profiles")
    concurrency: int = Field(default=4, ge=1, le=32)
    overlap_days: int = Field(default=2, ge=0)
    backfill_days: int = Field(default=30, ge=1)
    retention_days: int = Field(default=0, ge=0)
    download_timeout_seconds: float = Field(default=60.0, gt=0)
    browser_channel: str | None = None
    stores: list[CrmStore] = Field(default_factory=list)


class HallmarkStore(BaseModel):
    customer_id: str
    store_number: str
    store_name: str


class HallmarkConfig(BaseModel):
    default_customer_ids: list[str] = Field(default_factory=list)
    stores: list[HallmarkStore] = Field(default_factory=list)
    pingone_url: str | None = None


ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class EslShop(BaseModel):
    """``[[esl.shops]]``: one Shopify shop's own webhook secret and/or Admin API access, by env var name.

    ``webhook_secret_env``: its webhooks verify only with that secret (docs/security.md).
    ``admin_token_env``: reconciliation and webhook subscriptions through the Admin API (docs/esl.md).
    """

    shop: str = Field(min_length=1, max_length=255, description="the shop domain, e.g. x.myshopify.com")
    webhook_secret_env: str | None = Field(default=None, pattern=ENV_NAME)
    admin_token_env: str | None = Field(default=None, pattern=ENV_NAME)  # the shop's Admin API access token
    admin_api_base_url: str | None = None  # default https://{shop}; the sandbox points it at its simulator
    api_version: str | None = None  # default [esl] shopify_api_version
    callback_base_url: str | None = None  # public base URL Shopify delivers to (default APP_BASE_URL)
    inactive_products: Literal["remove", "keep"] = "remove"  # ARCHIVED / DRAFT products on labels

    @field_validator("shop")
    @classmethod
    def _shop(cls, value: str) -> str:
        return value.strip().lower()

    @model_validator(mode="after")
    def _says_something(self) -> EslShop:
        if not self.webhook_secret_env and not self.admin_token_env:
            raise ValueError(f"shop {self.shop}: set webhook_secret_env, admin_token_env or both")
        return self


class EslConfig(BaseModel):
    lease_seconds: float = Field(default=60.0, gt=0)
    bind_host: str = "127.0.0.1"
    port: int = 8000
    # reconciliation and webhook subscriptions (docs/esl.md)
    shopify_api_version: str = Field(default="2026-10", pattern=r"^\d{4}-\d{2}$")
    reconcile_overlap_seconds: float = Field(default=300.0, ge=0)
    shops: list[EslShop] = Field(default_factory=list)

    @field_validator("shops")
    @classmethod
    def _one_entry_per_shop(cls, value: list[EslShop]) -> list[EslShop]:
        seen = [s.shop for s in value]
        twice = sorted({shop for shop in seen if seen.count(shop) > 1})
        if twice:
            raise ValueError(f"shop(s) listed twice: {', '.join(twice)}")
        return value


class DashboardConfig(BaseModel):
    stale_after_hours: float = 24.0
    queue_age_alert_seconds: float = 300.0
    alert_interval_seconds: float = 3600.0


class StoreflowConfig(BaseModel):
    """The TOML file's structure. Every section is optional."""

    crm: CrmConfig = Field(default_factory=CrmConfig)
    hallmark: HallmarkConfig = Field(default_factory=HallmarkConfig)
    esl: EslConfig = Field(default_factory=EslConfig)
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)
    sandbox: dict[str, Any] = Field(default_factory=dict)
    # [[schedule]] tables: periodic jobs (storeflow.jobs.schedules, docs/jobs.md)
    schedule: list[ScheduleEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_schedule_ids(self) -> StoreflowConfig:
        from storeflow.jobs.schedules import periodic_defs

        periodic_defs(self.schedule)  # ValueError names a periodic id used twice
        return self


# ---------------------------------------------------------------- environment


class Settings(BaseSettings):
    """Every environment setting storeflow reads, under the specifications' names."""

    # Values are gathered by `load_settings` (environment over `.env` files).
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True)

    # core
    STOREFLOW_HOME: Path = Path("./.storeflow")
    STOREFLOW_CONFIG: Path | None = None
    STOREFLOW_BROWSER: str | None = None
    STOREFLOW_SANDBOX: bool = False
    STOREFLOW_ADMIN_TOKEN: SecretStr | None = None
    STOREFLOW_LOG_JSON: bool = False
    LOG_DIRECTORY: Path = Path("./logs")
    LOG_LEVEL: str = "INFO"
    DATABASE_URL: SecretStr | None = None
    # issue 14 (scale-pool): DATABASE_URL goes through a pooler in transaction mode (PgBouncer): no server-side
    # prepared statements, and LISTEN (which needs a session) over DATABASE_DIRECT_URL, else polling
    DATABASE_POOLER: Literal["none", "transaction"] = "none"
    DATABASE_DIRECT_URL: SecretStr | None = None

    # spec 000: Hallmark Connect
    HALLMARK_USERNAME: str | None = None
    HALLMARK_PASSWORD: SecretStr | None = None
    MFA_METHOD: Literal["manual", "webhook", "totp"] = "manual"
    MFA_TOTP_SECRET: SecretStr | None = None
    MFA_WEBHOOK_TIMEOUT_SECONDS: float = 300.0
    N8N_WEBHOOK_URL: str | None = None
    OUTPUT_DIRECTORY: Path = Path("./data")
    BASE_URL: str = "https://services.hallmarkconnect.com"
    RATE_LIMIT_DETAIL_SECONDS: float = Field(default=2.5, ge=0)
    RATE_LIMIT_SEARCH_SECONDS: float = Field(default=5.0, ge=0)
    RATE_LIMIT_JITTER_SECONDS: float = Field(default=0.5, ge=0)
    BREAK_AFTER_REQUESTS: int = Field(default=25, ge=0)
    BREAK_DURATION_SECONDS: float = Field(default=60.0, ge=0)
    BREAK_AFTER_JITTER: int = Field(default=5, ge=0)
    BREAK_JITTER_SECONDS: float = Field(default=15.0, ge=0)
    CONSERVATIVE_MODE: bool = False
    REQUEST_TIMEOUT_SECONDS: float = Field(default=30.0, gt=0)
    SEARCH_TIMEOUT_SECONDS: float = Field(default=120.0, gt=0)
    MAX_RETRIES: int = Field(default=3, ge=0)
    RETRY_AFTER_CAP_SECONDS: float = Field(default=300.0, ge=0)
    HEADLESS_MODE: bool = True
    SESSION_FILE: Path = Path("./sessions/hallmark_session.json")

    # spec 001: CRM downloads (credentials are named per store in TOML)
    ALERT_WEBHOOK_URL: str | None = None
    SMTP_HOST: str | None = None
    SMTP_PORT: int = 587
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: SecretStr | None = None
    SMTP_FROM: str | None = None
    SMTP_TO: str | None = None
    SMTP_STARTTLS: bool = True

    # spec 002: Hipoink ESL middleware
    HIPOINK_API_BASE_URL: str | None = None
    HIPOINK_USERNAME: str | None = None
    HIPOINK_PASSWORD: SecretStr | None = None
    HIPOINK_API_SECRET: SecretStr = SecretStr(HIPOINK_DEFAULT_SIGN)
    HIPOINK_CLIENT_ID: str = "default"
    HIPOINK_BATCH_SIZE: int = Field(default=200, ge=1, le=5000)
    SHOPIFY_WEBHOOK_SECRET: SecretStr | None = None
    SHOPIFY_API_KEY: str | None = None
    SHOPIFY_API_SECRET: SecretStr | None = None
    APP_BASE_URL: str = "http://127.0.0.1:8000"
    APP_ENVIRONMENT: Literal["development", "staging", "production", "sandbox", "test"] = "development"
    SYNC_WORKER_INTERVAL_SECONDS: float = Field(default=5.0, gt=0)
    MAX_RETRY_ATTEMPTS: int = Field(default=3, ge=1)
    RETRY_BACKOFF_MULTIPLIER: float = Field(default=2.0, ge=1)
    RETRY_INITIAL_DELAY_SECONDS: float = Field(default=1.0, ge=0)
    HIPOINK_RATE_LIMIT_PER_SECOND: float = Field(default=10.0, gt=0)
    # issue 11 (worker): the ESL retry budget beyond spec 002's settings, and database pool timeouts
    RETRY_WINDOW_SECONDS: float = Field(default=86400.0, gt=0)
    RETRY_MAX_DELAY_SECONDS: float = Field(default=300.0, gt=0)
    DB_CONNECT_TIMEOUT_SECONDS: float = Field(default=2.0, gt=0)
    DB_POOL_TIMEOUT_SECONDS: float = Field(default=1.5, gt=0)
    DB_RECONNECT_TIMEOUT_SECONDS: float = Field(default=2.0, gt=0)
    # issue 14 (ratelimit): HIPOINK_RATE_LIMIT_PER_SECOND and the Hallmark pacing per server/account across
    # every process (global, through PostgreSQL's rate_limits table) or per process as before (process)
    RATE_LIMIT_SCOPE: Literal["global", "process"] = "global"
    RATE_LIMIT_LEASE_SECONDS: float = Field(default=0.5, gt=0, le=10)

    # issue 12 (jobs on procrastinate, docs/jobs.md): retries of transient failures (portal 5xx, timeouts,
    # database unavailable) with exponential backoff; a worker whose heartbeat is older than
    # JOB_HEARTBEAT_TIMEOUT_SECONDS is stalled and its jobs run again elsewhere (checked every
    # JOB_STALLED_CHECK_SECONDS); SIGTERM waits JOB_SHUTDOWN_GRACE_SECONDS for jobs in hand, then hands them back
    JOB_RETRY_MAX_ATTEMPTS: int = Field(default=4, ge=1, le=100)
    JOB_RETRY_INITIAL_DELAY_SECONDS: float = Field(default=30.0, ge=0)
    JOB_RETRY_BACKOFF_MULTIPLIER: float = Field(default=2.0, ge=1)
    JOB_RETRY_MAX_DELAY_SECONDS: float = Field(default=1800.0, ge=0)
    JOB_HEARTBEAT_TIMEOUT_SECONDS: float = Field(default=30.0, ge=1)
    JOB_STALLED_CHECK_SECONDS: int = Field(default=15, ge=1, le=59)
    JOB_SHUTDOWN_GRACE_SECONDS: float = Field(default=30.0, ge=0)
    JOB_POLL_INTERVAL_SECONDS: float = Field(default=5.0, gt=0)
    # the cleanup job: finished job rows, log files and leftover downloads older than this
    JOB_RETENTION_DAYS: int = Field(default=30, ge=1)
    # Hallmark's incremental window (storeflow.jobs.windows): last successful end minus the overlap, to
    # today, never more than the backfill limit (today included)
    HALLMARK_OVERLAP_DAYS: int = Field(default=2, ge=0)
    HALLMARK_BACKFILL_DAYS: int = Field(default=30, ge=1)

    # dashboard
    DASHBOARD_USERNAME: str = "admin"
    DASHBOARD_PASSWORD: SecretStr | None = None

    # web access (storeflow.web.access, docs/security.md)
    # Host names the web app answers to, comma-separated (DNS rebinding); the bound host and the hosts of
    # APP_BASE_URL and each [[esl.shops]] callback_base_url are always added. Unset: 127.0.0.1,localhost,[::1].
    STOREFLOW_ALLOWED_HOSTS: str | None = None
    # reverse proxies (IPs/networks, comma-separated) whose X-Forwarded-For/-Proto are believed; default none
    FORWARDED_ALLOW_IPS: str | None = None
    # /docs and /openapi.json (served locally, to authenticated callers only); false turns both off
    STOREFLOW_API_DOCS: bool = True

    # loaded from TOML, not the environment
    config: StoreflowConfig = Field(default_factory=StoreflowConfig, exclude=True)
    config_path: Path | None = Field(default=None, exclude=True)
    # values from `.env` files (may hold per-store passwords: never printed)
    _dotenv: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("LOG_LEVEL")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return value

    # ---------------------------------------------------------------- helpers

    @property
    def dotenv(self) -> dict[str, str]:
        return self._dotenv

    @property
    def sandbox_mode(self) -> bool:
        return self.STOREFLOW_SANDBOX or self.APP_ENVIRONMENT == "sandbox"

    def secret_values(self) -> list[str]:
        """Every secret value known to settings, for log redaction."""
        found: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
        found += [getattr(self, name) or "" for name in SECRET_URLS]
        for store in self.config.crm.stores:
            pw = self.env_value(store.password_env)
            if pw:
                found.append(pw)
        for shop in self.config.esl.shops:
            found += [self.env_value(name) or "" for name in (shop.webhook_secret_env, shop.admin_token_env) if name]
        return [v for v in found if v and len(v) >= 4]

    def env_value(self, name: str) -> str | None:
        """A variable named by the TOML file (per-store credentials), from the environment or `.env`."""
        if name in os.environ:
            return os.environ[name]
        return self.dotenv.get(name)

    def require(self, *names: str) -> None:
        """Fail with a message naming every required setting that is missing."""
        missing = [n for n in names if _empty(getattr(self, n, None))]
        if missing:
            raise ConfigError(
                f"missing required setting(s): {', '.join(missing)} "
                "(set them in the environment or in .env; see `storeflow config show`)"
            )

    def check_production_secrets(self) -> None:
        """Refuse placeholder secrets outside sandbox/development mode; warn about public defaults elsewhere.

        Hipoink's public default sign counts as a placeholder outside the sandbox: an error in
        staging/production, a warning (console and log) in development and test.
        """
        public = self.public_default_secrets()
        if self.sandbox_mode or self.APP_ENVIRONMENT in {"development", "test"}:
            for name in public:
                _log.warning("%s", placeholder_warning(name), event="placeholder")
            return
        bad = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value().lower() in PLACEHOLDER_SECRETS:
                bad.append(name)
        bad += [name for name in public if name not in bad]
        if bad:
            raise ConfigError(f"placeholder secret(s) in {self.APP_ENVIRONMENT}: {', '.join(bad)}")

    def public_default_secrets(self) -> list[str]:
        """Secret settings in use that still hold a publicly documented default value (none in sandbox mode)."""
        if self.sandbox_mode:
            return []
        return [
            name
            for name, (default, used_by) in PUBLIC_DEFAULT_SECRETS.items()
            if getattr(self, used_by, None) and getattr(self, name).get_secret_value() == default
        ]

    def resolve(self, path: Path) -> Path:
        return path.expanduser()

    @property
    def home(self) -> Path:
        return self.STOREFLOW_HOME.expanduser()


SECRET_MARK = "********"
# Webhook URLs carry their credential in the path (n8n, Slack): treated as secrets in logs and `config show`.
SECRET_URLS = ("ALERT_WEBHOOK_URL", "N8N_WEBHOOK_URL")


def _empty(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, SecretStr):
        return not value.get_secret_value()
    return isinstance(value, str) and not value.strip()


def parse_dotenv(text: str) -> dict[str, str]:
    """A small `.env` reader (KEY=value, optional quotes, `export`, comments)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        out[key.strip()] = value
    return out


def load_toml(path: Path) -> StoreflowConfig:
    """Parse and validate the TOML structure file; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        line = int(found.group(1)) if found else max(1, text.count("\n"))
        raise ConfigError(f"{path}, line {line}: TOML syntax error: {exc}") from exc
    try:
        return StoreflowConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid configuration:\n{_format_validation(exc)}") from exc


def _format_validation(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)


def _read_dotenv(path: Path) -> dict[str, str]:
    return parse_dotenv(path.read_text(encoding="utf-8")) if path.is_file() else {}


def load_settings(config_path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Build the Settings object: environment, `.env` files, then the TOML file.

    The TOML path is ``config_path`` (``--config``), else ``STOREFLOW_CONFIG``, else
    ``./storeflow.toml`` when it exists. A `.env` beside that TOML file is read too
    (below ``./.env``, which is below the real environment), which is how
    ``sandbox up --write-config`` hands out its credentials.
    """
    environ = dict(os.environ if env is None else env)
    local = _read_dotenv(Path(".env"))
    path = config_path
    if path is None:
        named = environ.get("STOREFLOW_CONFIG") or local.get("STOREFLOW_CONFIG")
        path = Path(named) if named else None
    explicit = path is not None
    if path is None and Path("storeflow.toml").is_file():
        path = Path("storeflow.toml")
    if explicit and path is not None and not path.is_file():
        raise ConfigError(f"config file not found: {path} (from --config or STOREFLOW_CONFIG)")
    beside: dict[str, str] = {}
    if path is not None and (path.parent / ".env").resolve() != Path(".env").resolve():
        beside = _read_dotenv(path.parent / ".env")
    dotenv = {**beside, **local}
    values = {k: v for k, v in {**dotenv, **environ}.items() if k in Settings.model_fields}
    try:
        settings = Settings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"invalid environment settings:\n{_format_validation(exc)}") from exc
    settings._dotenv = dotenv
    if path is not None:
        settings.config = load_toml(path)
        settings.config_path = path
    return settings


def describe(settings: Settings) -> list[tuple[str, str, str]]:
    """(name, value, source) for every setting, secrets masked; for `storeflow config show`."""
    dotenv = settings.dotenv
    rows: list[tuple[str, str, str]] = []
    for name in type(settings).model_fields:
        if name in {"config", "config_path"}:
            continue
        value = getattr(settings, name)
        if name in os.environ:
            source = "environment"
        elif name in dotenv:
            source = ".env"
        else:
            source = "default"
        if isinstance(value, SecretStr):
            shown = SECRET_MARK if value.get_secret_value() else "(empty)"
        elif name in SECRET_URLS and value:
            shown = mask_url_path(str(value), SECRET_MARK)
        elif value is None:
            shown = "(unset)"
        else:
            shown = str(value)
        if name in {"DATABASE_URL", "DATABASE_DIRECT_URL"} and isinstance(value, SecretStr):
            shown = mask_url(value.get_secret_value())
        rows.append((name, shown, source))
    src = str(settings.config_path) if settings.config_path else "defaults (no TOML file)"
    cfg = settings.config
    rows.append(("[crm] stores", ", ".join(s.key for s in cfg.crm.stores) or "(none)", src))
    for store in cfg.crm.stores:
        pw = settings.env_value(store.password_env)
        rows.append(
            (
                f"[crm] {store.key} credentials",
                f"{store.username_env}={settings.env_value(store.username_env) or '(unset)'} "
                f"{store.password_env}={SECRET_MARK if pw else '(unset)'}",
                src,
            )
        )
    for key in (
        "download_dir",
        "profiles_dir",
        "concurrency",
        "overlap_days",
        "backfill_days",
        "retention_days",
    ):
        rows.append((f"[crm] {key}", str(getattr(cfg.crm, key)), src))
    rows.append(("[hallmark] default_customer_ids", ",".join(cfg.hallmark.default_customer_ids) or "(none)", src))
    rows.append(("[hallmark] stores", str(len(cfg.hallmark.stores)), src))
    rows.append(("[esl] lease_seconds", str(cfg.esl.lease_seconds), src))
    for shop in cfg.esl.shops:
        if shop.webhook_secret_env:
            secret = SECRET_MARK if settings.env_value(shop.webhook_secret_env) else "(unset)"
            rows.append((f"[esl] {shop.shop} webhook secret", f"{shop.webhook_secret_env}={secret}", src))
        if shop.admin_token_env:  # reconciliation and subscriptions
            token = SECRET_MARK if settings.env_value(shop.admin_token_env) else "(unset)"
            version = shop.api_version or cfg.esl.shopify_api_version
            rows.append((f"[esl] shop {shop.shop}", f"{shop.admin_token_env}={token} api {version}", src))
    return rows
