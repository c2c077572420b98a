"""One-time codes that arrive through a webhook (Hallmark's MFA, the CRM portals' OTP): which are new.

A webhook that relays SMS or e-mail codes keeps answering with the last code it received, so a
poll right after a login prompt usually sees the previous login's code first. `fresh_code` is
pure; `webhook_answer` is the one call to the webhook.
"""

from __future__ import annotations

from typing import Any

import httpx


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
