"""Component loggers and central redaction.

Each component (spec 000's auth, extractors, api, storage, main; plus crm, esl,
sandbox, db, web) writes ``logs/<component>.log``; the console shows WARNING and
above unless the level says otherwise. Lines read
``[timestamp] [component/store] [event] message`` (spec 001's format).

Secrets never reach a handler: every record passes through `RedactingFilter`,
which masks the known secret values and anything that looks like a password,
token, OTP code, signature or webhook secret.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from pathlib import Path
from typing import Any

COMPONENTS = ("auth", "extractors", "api", "storage", "main", "crm", "esl", "sandbox", "db", "web")
MASK = "***"

# A key whose value is secret: a whole token (so ``store_code`` or ``error_code`` stay readable).
_KEY = (
    r"(?:[\w.$-]*?[_.$-])?(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|authorization|"
    r"sign|signature|otp|hmac[\w-]*)|(?:mfa_|otp_|verification_?)?code"
)
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # Authorization: Bearer xxx / Basic xxx
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + MASK),
    # "key": "value" (JSON)
    (re.compile(rf'(?i)("(?:{_KEY})"\s*:\s*")[^"]*(")'), r"\1" + MASK + r"\2"),
    # key=value / key: value in query strings, forms, headers and prose
    (
        re.compile(rf"(?i)(?<![\w.$-])((?:{_KEY}))(\s*[=:]\s*)(?!\*\*\*)([^\s&,;\"'}}]+)"),
        r"\1\2" + MASK,
    ),
    # JWTs anywhere
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}"), MASK),
    # credentials inside URLs
    (re.compile(r"(?i)(\w+://[^/\s:@]+:)[^@\s/]+@"), r"\1" + MASK + "@"),
]

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secrets(values: Iterable[str | None]) -> None:
    """Add literal values (passwords, tokens, OTP codes) that must never be logged."""
    with _lock:
        for value in values:
            if value and len(value) >= 4:
                _secrets.add(value)


def redact(text: str) -> str:
    """Mask registered secrets and secret-looking key/value pairs in ``text``."""
    if not text:
        return text
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        for attr in ("store", "event"):
            if not hasattr(record, attr):
                setattr(record, attr, "-")
        if not hasattr(record, "component"):
            record.component = record.name.removeprefix("storeflow.")
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "component": getattr(record, "component", record.name),
            "store": getattr(record, "store", "-"),
            "event": getattr(record, "event", "-"),
            "message": record.getMessage(),
        }
        if record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False)


TEXT_FORMAT = "[%(asctime)s] [%(component)s/%(store)s] [%(event)s] %(message)s"


class StoreLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A component logger bound to a store; ``event=`` names the step."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        event = kwargs.pop("event", None)
        if event:
            extra["event"] = event
        extra.update(kwargs.pop("extra", {}) or {})
        kwargs["extra"] = extra
        return msg, kwargs


def get_logger(component: str, store: str | None = None) -> StoreLogger:
    """The logger for a component (``auth``, ``crm`` ...), optionally bound to a store."""
    logger = logging.getLogger(f"storeflow.{component}")
    return StoreLogger(logger, {"component": component, "store": store or "-"})


_configured: dict[str, Any] = {}


def setup_logging(
    log_dir: Path | None,
    level: str = "INFO",
    console_level: str | None = None,
    json_logs: bool = False,
    secrets: Iterable[str | None] = (),
) -> None:
    """Install file handlers per component and one console handler (idempotent)."""
    register_secrets(secrets)
    root = logging.getLogger("storeflow")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.propagate = False
    redactor = RedactingFilter()
    text = logging.Formatter(TEXT_FORMAT, "%Y-%m-%d %H:%M:%S")
    formatter: logging.Formatter = JsonFormatter() if json_logs else text

    if console_level is None:
        console_level = "DEBUG" if level.upper() == "DEBUG" else "WARNING"
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(console_level.upper())
    console.addFilter(redactor)
    console.setFormatter(formatter)
    root.addHandler(console)

    if log_dir is not None:
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            log_dir = None
    if log_dir is not None:
        for component in COMPONENTS:
            handler = logging.FileHandler(log_dir / f"{component}.log", encoding="utf-8", delay=True)
            handler.setLevel(level.upper())
            handler.addFilter(redactor)
            handler.addFilter(_ComponentFilter(component))
            handler.setFormatter(formatter)
            root.addHandler(handler)
    # the logger passes only what some handler keeps: isEnabledFor() is then an honest, cheap guard
    root.setLevel(min(h.level for h in root.handlers))
    _configured.update(log_dir=log_dir, level=level)


class _ComponentFilter(logging.Filter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "component", None) == self.component
