"""Hipoink ESL API client (V1.0.0): product/create, create_multiple, del_multiple.

The caller hands in the `httpx.AsyncClient` (tests use a MockTransport, production and the sandbox
a real one); only the base URL differs between the real server and the simulator. Every call
returns a `Verdict` (`judge_reply`) and never raises for HTTP or network trouble.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from storeflow.http.policy import Failure, classify_status, parse_retry_after
from storeflow.logs import get_logger
from storeflow.settings import HIPOINK_DEFAULT_SIGN

log = get_logger("esl")
DEFAULT_SIGN = HIPOINK_DEFAULT_SIGN


@dataclass(frozen=True)
class Verdict:
    ok: bool
    transient: bool = False
    error: str | None = None
    http_status: int | None = None
    error_code: int | None = None
    retry_after: float | None = None


def judge_reply(status: int, body: bytes, retry_after: float | None = None) -> Verdict:
    """HTTP status + body -> success, transient or permanent. HTTP 200 with error_code != 0 is a failure.

    The status rules are `http.policy.classify_status`'s; what a 2xx body means is Hipoink's."""
    failure = classify_status(status)
    if failure is Failure.PERMANENT:
        return Verdict(False, False, f"HTTP {status}: {_snippet(body)}", status)
    if failure is not None:  # rate-limited or transient: worth sending again
        return Verdict(False, True, f"HTTP {status}", status, None, retry_after)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        # a truncated/garbled 2xx body: the request may not have been applied, sending again is safe
        return Verdict(False, True, f"HTTP {status} with an unreadable body: {_snippet(body)}", status)
    if not isinstance(data, dict) or "error_code" not in data:
        return Verdict(False, True, f"HTTP {status} without error_code: {_snippet(body)}", status)
    try:
        code = int(data["error_code"])
    except (TypeError, ValueError):
        return Verdict(False, False, f"HTTP {status} with error_code {data.get('error_code')!r}", status)
    if code != 0:
        message = data.get("error_msg") or data.get("msg") or ""
        return Verdict(False, False, f"error_code {code}: {message}".rstrip(": "), status, code)
    return Verdict(True, http_status=status, error_code=0)


def _snippet(body: bytes, limit: int = 200) -> str:
    return body[:limit].decode("utf-8", "replace").strip()


@dataclass(frozen=True)
class HipoinkClient:
    """The three calls the worker makes; its settings (base URL, client id, sign) never change."""

    http: httpx.AsyncClient
    base_url: str
    client_id: str = "default"
    sign: str = field(default=DEFAULT_SIGN, repr=False)

    def url(self, action: str) -> str:
        return f"{self.base_url.rstrip('/')}/api/{self.client_id}/product/{action}"

    def envelope(self, store_code: str) -> dict[str, Any]:
        return {"store_code": store_code, "is_base64": "0", "sign": self.sign}

    async def create(self, store_code: str, product: dict[str, Any]) -> Verdict:
        """One product (fields at the top level of the body)."""
        return await self._post("create", {**product, **self.envelope(store_code)})

    async def create_multiple(self, store_code: str, products: Sequence[dict[str, Any]]) -> Verdict:
        """Many products in ``f1``."""
        return await self._post("create_multiple", {**self.envelope(store_code), "f1": list(products)})

    async def delete_multiple(self, store_code: str, codes: Sequence[str]) -> Verdict:
        """Remove products by code (``f1`` = list of codes); their labels are unbound."""
        return await self._post("del_multiple", {**self.envelope(store_code), "f1": list(codes)})

    async def _post(self, action: str, body: dict[str, Any]) -> Verdict:
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            response = await self.http.post(
                self.url(action), content=content, headers={"Content-Type": "application/json"}
            )
        except httpx.TimeoutException as exc:
            return Verdict(False, True, f"timeout: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return Verdict(False, True, f"{type(exc).__name__}: {exc}"[:300])
        verdict = judge_reply(
            response.status_code, response.content, parse_retry_after(response.headers.get("Retry-After"))
        )
        if not verdict.ok:
            log.debug("hipoink %s failed: %s", action, verdict.error, event="hipoink")
        return verdict
