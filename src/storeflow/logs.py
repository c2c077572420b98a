"""Component loggers and central redaction.

Each component (Hallmark's auth, extractors, api, storage, main; plus crm, esl,
sandbox, db, web) writes ``logs/<component>.log``; the console shows WARNING and
above unless the level says otherwise. Lines read
``[timestamp] [component/store] [event] message`` (README "Logs", docs/crm.md).

Secrets never reach a handler: every record passes through `RedactingFilter`,
which masks the known secret values and anything that looks like a password,
token, OTP code, signature, cookie or webhook secret. The same `redact` runs on
uvicorn's and httpx's own loggers, on every rich console (`redacting_console`),
on unexpected tracebacks, and on the text stored in database error columns
(`redact_error`) and alert payloads (`redact_value`).
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, MutableMapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import quote

from storeflow.files import make_private_dir

if TYPE_CHECKING:
    from rich.console import Console

COMPONENTS = ("auth", "extractors", "api", "storage", "main", "crm", "esl", "sandbox", "db", "web")
MASK = "***"
# third-party loggers whose records storeflow's processes may print (uvicorn's own handlers included)
FOREIGN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.asgi", "httpx", "httpcore", "asyncio")
ACCESS_LOGGER = "uvicorn.access"

# A key whose value is secret: a whole token (so ``store_code`` or ``error_code`` stay readable).
_KEY = (
    r"(?:[\w.$-]*?[_.$-])?(?:password|passwd|pwd|secret|token|api[_-]?key|apikey|"
    r"sign|signature|sig|otp|hmac[\w-]*)|(?:mfa_|otp_|verification_?)?code"
)
# ... plus the headers whose whole value is a credential (their unquoted forms have their own patterns)
_QUOTED_KEY = rf"{_KEY}|(?:proxy-)?authorization|(?:set-)?cookie"
_SCHEMES = r"bearer|basic|token|digest|negotiate|ntlm|apikey|key|sso-key|hmac[\w-]*|aws4-hmac-sha256"
_BARE = r"-?[\w.+-]+"  # a number, true/false/null/None, or an unquoted word


def _quoted_value(found: re.Match[str]) -> str:
    delimiter = found.group("v") or ""
    return f"{found.group('head')}{delimiter}{MASK}{delimiter}"


# words of every secret-looking key (_KEY): a text with none of them skips the key/value patterns
_KEY_WORDS = ("pass", "pwd", "secret", "token", "key", "sig", "otp", "hmac", "code")

# (words one of which the lower-cased text must contain, pattern, replacement): the words are a cheap
# pre-check so that an ordinary log line costs a few substring tests, not eight regex scans
_PATTERNS: list[tuple[tuple[str, ...], re.Pattern[str], Any]] = [
    # Authorization: Bearer xxx / Basic xxx in prose
    (("bearer", "basic"), re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + MASK),
    # "key": "value" / 'key': 'value' / "key": 123 (JSON and Python reprs; escaped quotes inside the value)
    (
        ('"', "'"),
        re.compile(
            rf"""(?i)(?P<head>(?P<q>["'])(?:{_QUOTED_KEY})(?P=q)\s*:\s*)"""
            rf"""(?:(?P<v>["'])(?:\\.|(?!(?P=v))[^\\])*(?P=v)|{_BARE})"""
        ),
        _quoted_value,
    ),
    # \"key\": \"value\" (JSON inside a JSON string)
    (
        ('\\"', "\\'"),
        re.compile(
            rf"""(?i)(?P<head>(?P<q>\\["'])(?:{_QUOTED_KEY})(?P=q)\s*:\s*)"""
            rf"""(?:(?P<v>\\["'])(?:(?!(?P=v)).)*(?P=v)|{_BARE})"""
        ),
        _quoted_value,
    ),
    # Authorization: <scheme> <credentials>, Cookie: / Set-Cookie: <value>: to the end of the line or quote
    (
        ("authorization",),
        re.compile(
            rf"""(?i)(?<![\w-])((?:proxy-)?authorization\s*[:=]\s*)(?!\*\*\*)((?:{_SCHEMES})\s+)?[^\s"'}}][^\r\n"'}}]*"""
        ),
        r"\1\2" + MASK,
    ),
    (("cookie",), re.compile(r"""(?i)(?<![\w-])((?:set-)?cookie\s*:\s*)(?!\*\*\*)[^\r\n"'}]+"""), r"\1" + MASK),
    # key=value / key: value / key='value' in query strings, forms, headers and prose
    (
        _KEY_WORDS,
        re.compile(
            rf"""(?i)(?<![\w.$-])((?:{_KEY}))(\s*[=:]\s*)(?!\*\*\*)"""
            r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s&,;"'}]+)"""
        ),
        r"\1\2" + MASK,
    ),
    # JWTs anywhere
    (("eyj",), re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}"), MASK),
    # credentials inside URLs
    (("://",), re.compile(r"(?i)(\w+://[^/\s:@]+:)[^@\s/]+@"), r"\1" + MASK + "@"),
]

_secrets: list[str] = []  # every registered value and its URL-encoded forms, longest first
_lock = threading.Lock()


def register_secrets(values: Iterable[str | None]) -> None:
    """Add literal values (passwords, tokens, OTP codes) that must never be logged."""
    with _lock:
        known = set(_secrets)
        for value in values:
            if value and len(value) >= 4:
                known.update({value, quote(value, safe=""), quote(value, safe="/:")})
        _secrets[:] = sorted(known, key=len, reverse=True)


def redact(text: str) -> str:
    """Mask registered secrets and secret-looking key/value pairs in ``text``."""
    if not text:
        return text
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    lower = text.lower()
    for words, pattern, repl in _PATTERNS:
        if any(word in lower for word in words):
            text = pattern.sub(repl, text)
    return text


def redact_error(error: object, limit: int | None = None) -> str | None:
    """The text for a database error column (audit, ledger, sync log, run rows): redacted, then cut to ``limit``.

    Every writer of such a column passes its text through here, so what the dashboard shows is redacted.
    """
    if error is None:
        return None
    return redact(str(error))[:limit]


def redact_value(value: Any) -> Any:
    """``value`` with every string inside it redacted, and the values of secret keys masked; for JSON payloads."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {
            key: MASK if _is_secret_key(key) and _is_scalar(item) else redact_value(item) for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value


_SECRET_KEY = re.compile(rf"(?i)(?:{_QUOTED_KEY})")


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and _SECRET_KEY.fullmatch(key) is not None


def _is_scalar(item: object) -> bool:
    return isinstance(item, str | int | float) and not isinstance(item, bool)


def mask_url(url: str) -> str:
    """The URL with its password (``user:pw@`` or ``password=``) replaced by ``***``."""
    url = re.sub(r"(?i)(\w+://[^/\s:@]+:)[^@\s/]+@", r"\1" + MASK + "@", url)
    return re.sub(r"(?i)(password=)[^&\s]+", r"\1" + MASK, url)


def mask_url_path(url: str, mark: str = MASK) -> str:
    """Scheme and host only (webhook URLs carry their credential in the path): ``https://n8n.example.com/***``."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.split('/', 1)[0].rpartition('@')[2]}/{mark}" if sep else mark


class RedactingStream:
    """A text stream that redacts every write before passing it on (rich consoles print through it).

    ``target`` is called on each write, so a console made at import time follows ``sys.stdout``/``sys.stderr``
    when a test runner or Typer's CliRunner swaps them.
    """

    def __init__(self, target: Callable[[], TextIO]) -> None:
        self._target = target

    def write(self, text: str) -> int:
        self._target().write(redact(text))
        return len(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return bool(getattr(self._target(), "isatty", lambda: False)())

    def fileno(self) -> int:
        return self._target().fileno()

    @property
    def encoding(self) -> str:
        return getattr(self._target(), "encoding", None) or "utf-8"


def redacting_console(stderr: bool = False, **kwargs: Any) -> Console:
    """A rich Console whose every byte passes through `redact` (use it instead of ``Console()``)."""
    from rich.console import Console

    stream = RedactingStream((lambda: sys.stderr) if stderr else (lambda: sys.stdout))
    return Console(file=stream, stderr=stderr, **kwargs)  # type: ignore[arg-type]


class RedactingFilter(logging.Filter):
    """Redacts a record's message and traceback before any handler sees it (storeflow's and foreign loggers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        record.msg = redact(message)
        record.args = None
        _redact_exception(record)
        for attr in ("store", "event"):
            if not hasattr(record, attr):
                setattr(record, attr, "-")
        if not hasattr(record, "component"):
            record.component = record.name.removeprefix("storeflow.")
        return True


class _RedactingArgsFilter(logging.Filter):
    """For uvicorn's access log, whose formatter unpacks ``record.args``: each argument redacted in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        record.msg = redact(str(record.msg))
        _redact_exception(record)
        return True


def _redact_exception(record: logging.LogRecord) -> None:
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


class PrivateFileHandler(logging.FileHandler):
    """A FileHandler whose file is created 0600 (``os.open`` with the mode, so no umask decides it)."""

    def _open(self) -> io.TextIOWrapper:
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in self.mode else os.O_TRUNC)
        fd = os.open(self.baseFilename, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
        return io.TextIOWrapper(io.FileIO(fd, "a" if "a" in self.mode else "w"), encoding=self.encoding,
                                errors=self.errors, write_through=True)  # fmt: skip


def _print_redacted_exception(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    sys.stderr.write(redact("".join(traceback.format_exception(kind, exc, tb))))


def redact_foreign_loggers() -> None:
    """Put the redaction on uvicorn's, httpx's and asyncio's own loggers (their handlers are not ours).

    Logger filters survive uvicorn's ``dictConfig``, which replaces handlers but keeps filters.
    """
    for name in (*FOREIGN_LOGGERS, ACCESS_LOGGER):
        logger = logging.getLogger(name)
        kind = _RedactingArgsFilter if name == ACCESS_LOGGER else RedactingFilter
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())


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
    redact_foreign_loggers()
    sys.excepthook = _print_redacted_exception  # an unexpected error's traceback is printed redacted too
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
            make_private_dir(log_dir)
        except OSError:
            log_dir = None
    if log_dir is not None:
        for component in COMPONENTS:
            handler = PrivateFileHandler(log_dir / f"{component}.log", encoding="utf-8", delay=True)
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
