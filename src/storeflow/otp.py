"""One-time codes (Hallmark's MFA, the CRM portals' OTP): typed by the operator, or from a webhook.

A webhook that relays SMS or e-mail codes keeps answering with the last code it received, so a
poll right after a login prompt usually sees the previous login's code first. `fresh_code` is
pure; `webhook_answer` is the one call to the webhook; `read_code` is the one manual prompt.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import httpx


def read_code(text: str, stdin: TextIO | None = None, out: TextIO | None = None) -> str:
    """Ask for a one-time code and read one line, without echoing it on a terminal.

    On a terminal, echo is off before the prompt is written (so nothing typed after it is shown)
    and restored afterwards; a piped stdin (cron, tests) is read as it is. The prompt goes to stderr.
    """
    stdin = stdin or sys.stdin
    out = out or sys.stderr
    if not stdin.isatty():
        out.write(text)
        out.flush()
        return stdin.readline()
    import termios

    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    quiet = termios.tcgetattr(fd)
    quiet[3] &= ~termios.ECHO
    termios.tcsetattr(fd, termios.TCSAFLUSH, quiet)
    try:
        out.write(text)
        out.flush()
        return stdin.readline()
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
        out.write("\n")
        out.flush()


async def webhook_answer(http: httpx.AsyncClient, url: str) -> Any:
    """The webhook's JSON answer (GET, or POST where GET is not allowed); None when it has nothing.

    Raises httpx.HTTPError when the webhook cannot be reached: the caller decides how loud that is.
    """
    response = await http.get(url, timeout=10)
    if response.status_code == 405:
        response = await http.post(url, json={}, timeout=10)
    if response.status_code >= 400 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def fresh_code(payload: Any, stale_code: str | None, prompted_at: float) -> str | None:
    """The code in a webhook answer if it was issued after the prompt, else None.

    The answer is ``{"code": "123456"}``, optionally with a timestamp (``issued_at``/``timestamp``/
    ``received_at``, epoch seconds or milliseconds). With a timestamp, its time decides: a portal that
    sends the same code again for a new login is still answered. Without one, a code equal to the one
    the webhook served before the prompt is stale.
    """
    if not isinstance(payload, dict):
        return None
    code = str(payload.get("code") or "").strip()
    if not code.isdigit():
        return None
    for key in ("issued_at", "timestamp", "received_at"):
        stamp = payload.get(key)
        if isinstance(stamp, int | float) and not isinstance(stamp, bool):
            seconds = stamp / 1000 if stamp > 1e11 else float(stamp)
            return code if seconds >= prompted_at else None
    if stale_code is not None and code == stale_code:
        return None
    return code
