"""Alert delivery: a JSON POST to ALERT_WEBHOOK_URL and/or a mail through the SMTP settings.

Callers build the payload (what failed, which store, what to do); this module
only delivers it. De-duplication and "resolved" messages belong to the caller
(the dashboard's alert engine).
"""

from __future__ import annotations

import json
import smtplib
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import httpx

from storeflow.logs import MASK, get_logger, mask_url_path, redact, redact_value

if TYPE_CHECKING:
    from storeflow.settings import Settings

log = get_logger("main")


def alert_channels(settings: Settings) -> list[str]:
    channels = []
    if settings.ALERT_WEBHOOK_URL:
        channels.append("webhook")
    if settings.SMTP_HOST and settings.SMTP_TO:
        channels.append("email")
    return channels


def send_alert(settings: Settings, payload: dict[str, Any], client: httpx.Client | None = None) -> dict[str, str]:
    """Deliver ``payload`` on every configured channel; returns {channel: "sent" | error}. Never raises."""
    results: dict[str, str] = {}
    body = redact_value(json.loads(json.dumps(payload, default=str)))
    if settings.ALERT_WEBHOOK_URL:
        try:
            own = client is None
            http = client or httpx.Client(timeout=settings.REQUEST_TIMEOUT_SECONDS)
            try:
                response = http.post(settings.ALERT_WEBHOOK_URL, json=body)
                response.raise_for_status()
            finally:
                if own:
                    http.close()
            results["webhook"] = "sent"
        except httpx.HTTPError as exc:
            results["webhook"] = failure_text(exc, settings.ALERT_WEBHOOK_URL)
    if settings.SMTP_HOST and settings.SMTP_TO:
        try:
            _mail(settings, body)
            results["email"] = "sent"
        except (OSError, smtplib.SMTPException) as exc:
            results["email"] = failure_text(exc)
    for channel, outcome in results.items():
        if outcome != "sent":
            log.warning("alert via %s %s", channel, outcome, event="alert")
    return results


def failure_text(exc: BaseException, url: str | None = None) -> str:
    """``failed: <error>`` with the secret URL (ALERT_WEBHOOK_URL) and every secret-looking value masked.

    httpx names the URL in its errors, sometimes normalised (``https://host/path/``) or percent-encoded;
    each form, and the URL's path and query on their own, is masked before the text is printed, stored
    in ``dashboard_alert_log`` or shown on the overview page.
    """
    text = f"failed: {type(exc).__name__}: {exc}" if not str(exc) else f"failed: {exc}"
    if url:
        parsed = httpx.URL(url)
        masked = mask_url_path(url)
        tail = parsed.raw_path.decode("ascii", "replace")
        for form in sorted({url, str(parsed), url.rstrip("/")}, key=len, reverse=True):
            text = text.replace(form, masked)
        if len(tail) > 1:
            text = text.replace(tail, "/" + MASK)
    return redact(text)


def _mail(settings: Settings, body: dict[str, Any]) -> None:
    msg = EmailMessage()
    msg["Subject"] = f"[storeflow] {body.get('title') or body.get('kind') or 'alert'}"
    msg["From"] = settings.SMTP_FROM or f"storeflow@{settings.SMTP_HOST}"
    msg["To"] = settings.SMTP_TO or ""
    msg.set_content(json.dumps(body, indent=2, default=str))
    assert settings.SMTP_HOST is not None
    with smtplib.SMTP(settings.SMTP_HOST, settings.SMTP_PORT, timeout=settings.REQUEST_TIMEOUT_SECONDS) as smtp:
        if settings.SMTP_STARTTLS and settings.SMTP_PORT != 25:
            smtp.starttls()
        if settings.SMTP_USERNAME and settings.SMTP_PASSWORD:
            smtp.login(settings.SMTP_USERNAME, settings.SMTP_PASSWORD.get_secret_value())
        smtp.send_message(msg)
