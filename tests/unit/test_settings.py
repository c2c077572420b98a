from __future__ import annotations

from pathlib import Path

import pytest

from storeflow.errors import ConfigError
from storeflow.settings import SECRET_MARK, Settings, describe, load_settings, parse_dotenv

SPEC_NAMES = [
    # spec 000
    "HALLMARK_USERNAME",
    "HALLMARK_PASSWORD",
    "MFA_METHOD",
    "N8N_WEBHOOK_URL",
    "OUTPUT_DIRECTORY",
    "LOG_LEVEL",
    "BASE_URL",
    "RATE_LIMIT_DETAIL_SECONDS",
    "RATE_LIMIT_SEARCH_SECONDS",
    "RATE_LIMIT_JITTER_SECONDS",
    "BREAK_AFTER_REQUESTS",
    "BREAK_DURATION_SECONDS",
    "BREAK_AFTER_JITTER",
    "BREAK_JITTER_SECONDS",
    "CONSERVATIVE_MODE",
    "REQUEST_TIMEOUT_SECONDS",
    "SEARCH_TIMEOUT_SECONDS",
    "MAX_RETRIES",
    "HEADLESS_MODE",
    "DATABASE_URL",
    "SESSION_FILE",
    # spec 002
    "HIPOINK_API_BASE_URL",
    "HIPOINK_USERNAME",
    "HIPOINK_PASSWORD",
    "HIPOINK_API_SECRET",
    "HIPOINK_CLIENT_ID",
    "SHOPIFY_WEBHOOK_SECRET",
    "SHOPIFY_API_KEY",
    "SHOPIFY_API_SECRET",
    "APP_BASE_URL",
    "APP_ENVIRONMENT",
    "SYNC_WORKER_INTERVAL_SECONDS",
    "MAX_RETRY_ATTEMPTS",
    "RETRY_BACKOFF_MULTIPLIER",
    "RETRY_INITIAL_DELAY_SECONDS",
    "HIPOINK_RATE_LIMIT_PER_SECOND",
]


@pytest.fixture(autouse=True)
def _no_local_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's ./.env or ./storeflow.toml must not leak into these tests."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_every_specification_variable_is_a_setting(name: str) -> None:
    assert name in Settings.model_fields


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        ("RATE_LIMIT_DETAIL_SECONDS", "0.05", 0.05),
        ("BREAK_AFTER_REQUESTS", "10", 10),
        ("CONSERVATIVE_MODE", "true", True),
        ("HEADLESS_MODE", "false", False),
        ("MFA_METHOD", "webhook", "webhook"),
        ("LOG_LEVEL", "debug", "DEBUG"),
        ("SESSION_FILE", "sessions/x.json", Path("sessions/x.json")),
        ("HIPOINK_RATE_LIMIT_PER_SECOND", "25", 25.0),
    ],
)
def test_environment_values_are_typed(name: str, raw: str, expected: object) -> None:
    settings = load_settings(env={name: raw})
    assert getattr(settings, name) == expected


@pytest.mark.parametrize(
    ("name", "raw"),
    [("MFA_METHOD", "sms"), ("RATE_LIMIT_DETAIL_SECONDS", "-1"), ("LOG_LEVEL", "LOUD"), ("MAX_RETRIES", "x")],
)
def test_bad_environment_values_name_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings(env={name: raw})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1", {"A": "1"}),
        ("export A=1", {"A": "1"}),
        ("A='x y'", {"A": "x y"}),
        ('A="x#y"', {"A": "x#y"}),
        ("A=1 # comment", {"A": "1"}),
        ("# only a comment\n\nB=2", {"B": "2"}),
        ("no equals sign", {}),
    ],
)
def test_parse_dotenv(text: str, expected: dict[str, str]) -> None:
    assert parse_dotenv(text) == expected


def test_dotenv_file_is_read_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("HALLMARK_USERNAME=from-dotenv\nMAX_RETRIES=7\n")
    monkeypatch.setenv("MAX_RETRIES", "9")
    monkeypatch.delenv("HALLMARK_USERNAME", raising=False)
    settings = load_settings()
    assert settings.HALLMARK_USERNAME == "from-dotenv"
    assert settings.MAX_RETRIES == 9
    sources = {name: source for name, _, source in describe(settings)}
    assert sources["HALLMARK_USERNAME"] == ".env"
    assert sources["MAX_RETRIES"] == "environment"


def test_describe_masks_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        env={
            "HALLMARK_PASSWORD": "s3cret-pass",
            "SHOPIFY_WEBHOOK_SECRET": "whsec-123456",
            "DATABASE_URL": "postgresql://u:dbpass@h/db",
        }
    )
    rows = describe(settings)
    text = repr(rows)
    assert "s3cret-pass" not in text and "whsec-123456" not in text and "dbpass" not in text
    values = {name: value for name, value, _ in rows}
    assert values["HALLMARK_PASSWORD"] == SECRET_MARK
    assert values["DATABASE_URL"] == "postgresql://u:***@h/db"
    assert "s3cret-pass" not in repr(settings)


def test_toml_stores_and_env_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "storeflow.toml"
    cfg.write_text(
        '[crm]\nconcurrency = 2\n[[crm.stores]]\ncrm = "td"\ncode = "a668"\nname = "Uttam Nagar"\n'
        'username_env = "TD_A668_USER"\npassword_env = "TD_A668_PASS"\n'
    )
    (tmp_path / ".env").write_text("TD_A668_USER=u1\nTD_A668_PASS=p1-secret\n")
    settings = load_settings()
    assert settings.config_path == Path("storeflow.toml")
    store = settings.config.crm.stores[0]
    assert (store.key, settings.env_value(store.password_env)) == ("td_a668", "p1-secret")
    assert "p1-secret" in settings.secret_values()


def test_toml_error_names_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[crm]\nconcurrency = = 3\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*line 2"):
        load_settings(cfg, env={})


def test_toml_validation_error_names_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[crm]\nconcurrency = 0\n")
    with pytest.raises(ConfigError, match=r"crm\.concurrency"):
        load_settings(cfg, env={})


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_require_names_missing_variables() -> None:
    settings = load_settings(env={"HALLMARK_USERNAME": "u"})
    with pytest.raises(ConfigError, match="HALLMARK_PASSWORD") as info:
        settings.require("HALLMARK_USERNAME", "HALLMARK_PASSWORD")
    assert "HALLMARK_USERNAME" not in str(info.value).split(":")[1]


@pytest.mark.parametrize(
    ("environment", "secret", "refused"),
    [
        ("production", "changeme", True),
        ("production", "a-real-secret", False),
        ("development", "changeme", False),
        ("sandbox", "changeme", False),
    ],
)
def test_placeholder_secrets_refused_outside_sandbox(environment: str, secret: str, refused: bool) -> None:
    settings = load_settings(env={"APP_ENVIRONMENT": environment, "SHOPIFY_WEBHOOK_SECRET": secret})
    if refused:
        with pytest.raises(ConfigError, match="SHOPIFY_WEBHOOK_SECRET"):
            settings.check_production_secrets()
    else:
        settings.check_production_secrets()


def test_dotenv_beside_config_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (tmp_path / "sb").mkdir()
    (tmp_path / "sb" / "storeflow.toml").write_text("")
    (tmp_path / "sb" / ".env").write_text("HALLMARK_USERNAME=sandbox-user\n")
    monkeypatch.delenv("HALLMARK_USERNAME", raising=False)
    settings = load_settings(tmp_path / "sb" / "storeflow.toml")
    assert settings.HALLMARK_USERNAME == "sandbox-user"


def test_webhook_urls_are_masked_and_redacted() -> None:
    url = "https://n8n.example.com/webhook/9f8e7d6c-secret-path"
    settings = load_settings(
        env={"N8N_WEBHOOK_URL": url, "ALERT_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/xyz"}
    )
    shown = {name: value for name, value, _ in describe(settings)}
    assert shown["N8N_WEBHOOK_URL"] == f"https://n8n.example.com/{SECRET_MARK}"
    assert "xyz" not in shown["ALERT_WEBHOOK_URL"]
    assert url in settings.secret_values()


HIPOINK_DEFAULT_SIGN = "80805d794841f1b4"


@pytest.mark.parametrize(
    ("env", "outcome"),
    [
        ({"APP_ENVIRONMENT": "production"}, "error"),
        ({"APP_ENVIRONMENT": "staging"}, "error"),
        ({"APP_ENVIRONMENT": "production", "HIPOINK_API_SECRET": HIPOINK_DEFAULT_SIGN}, "error"),
        ({"APP_ENVIRONMENT": "development"}, "warning"),
        ({"APP_ENVIRONMENT": "test"}, "warning"),
        ({"APP_ENVIRONMENT": "sandbox"}, "quiet"),
        ({"APP_ENVIRONMENT": "production", "STOREFLOW_SANDBOX": "1"}, "quiet"),
        ({"APP_ENVIRONMENT": "production", "HIPOINK_API_SECRET": "a-sign-of-our-own"}, "quiet"),
        ({"APP_ENVIRONMENT": "development", "HIPOINK_API_SECRET": "a-sign-of-our-own"}, "quiet"),
    ],
)
def test_hipoinks_public_default_sign_is_a_placeholder_outside_the_sandbox(
    env: dict[str, str], outcome: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(env={"HIPOINK_API_BASE_URL": "https://hipoink.example.com", **env})
    if outcome == "error":
        with pytest.raises(ConfigError, match="HIPOINK_API_SECRET"):
            settings.check_production_secrets()
        return
    with caplog.at_level("WARNING", logger="storeflow"):
        settings.check_production_secrets()
    warned = [r.getMessage() for r in caplog.records if "HIPOINK_API_SECRET" in r.getMessage()]
    assert len(warned) == (1 if outcome == "warning" else 0)
    assert settings.public_default_secrets() == (["HIPOINK_API_SECRET"] if outcome == "warning" else [])


@pytest.mark.parametrize(
    ("env", "status"),
    [
        ({"APP_ENVIRONMENT": "production"}, "fail"),
        ({"APP_ENVIRONMENT": "development"}, "warn"),
        ({"APP_ENVIRONMENT": "development", "HIPOINK_API_SECRET": "a-sign-of-our-own"}, "ok"),
        ({"APP_ENVIRONMENT": "sandbox"}, "ok"),
    ],
)
def test_doctor_secrets_check(env: dict[str, str], status: str) -> None:
    from storeflow.doctor import secrets_check

    check = secrets_check(load_settings(env={"HIPOINK_API_BASE_URL": "https://hipoink.example.com", **env}))
    assert check.status == status
    assert ("HIPOINK_API_SECRET" in check.detail) == (status != "ok")
