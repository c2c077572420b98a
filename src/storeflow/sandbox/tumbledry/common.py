"""Helpers both CRM simulators share: deterministic rows, messy values, XLSX bytes, report faults, tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import random
import threading
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

REPORT_FAULTS = ("corrupt", "truncated", "missing_column", "zero_rows", "slow")
FIXED_CREATED = datetime(2024, 1, 1)


def day_rng(kind: str, seed: int, store: str, day: date) -> random.Random:
    """The generator of one store's day: same seed, store and day -> same rows."""
    return random.Random(f"{kind}:{seed}:{store}:{day.isoformat()}")


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def messy_phone(rng: random.Random) -> str:
    digits = f"{rng.choice('6789')}{rng.randrange(10**9):09d}"
    style = rng.randrange(7)
    if style == 0:
        return f"+91 {digits[:5]} {digits[5:]}"
    if style == 1:
        return f"+91-{digits}"
    if style == 2:
        return f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"
    if style == 3 and "0" in digits:
        return digits.replace("0", "O", 1)  # a letter O typed for a zero
    if style == 4:
        return ""
    if style == 5:
        return f"0{digits}"
    return digits


def money(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 2)


def messy_amount(value: float, rng: random.Random) -> Any:
    """Amounts >= 1000 often arrive as text with thousands separators."""
    if value >= 1000 and rng.random() < 0.7:
        return f"{value:,.2f}"
    return value


def xlsx_bytes(header: list[str], rows: list[list[Any]], footer: list[list[Any]]) -> bytes:
    """An XLSX (xlsxwriter, fixed metadata so the same data gives the same bytes)."""
    import xlsxwriter

    buffer = io.BytesIO()
    workbook = xlsxwriter.Workbook(buffer, {"in_memory": True, "strings_to_numbers": False})
    workbook.set_properties({"created": FIXED_CREATED, "author": "sandbox"})
    sheet = workbook.add_worksheet("Report")
    bold = workbook.add_format({"bold": True})
    sheet.write_row(0, 0, header, bold)
    for n, row in enumerate(rows, start=1):
        sheet.write_row(n, 0, row)
    at = len(rows) + 2  # one empty line before the footer, as the portals do
    for n, row in enumerate(footer):
        sheet.write_row(at + n, 0, row)
    workbook.close()
    return buffer.getvalue()


class ReportFaultSpec(BaseModel):
    kind: str = Field(description="corrupt | truncated | missing_column | zero_rows | slow")
    store: str = Field(default="*", description="store code, or * for any store")
    count: int = Field(default=1, ge=1)
    column: str | None = Field(default=None, description="missing_column: the column to drop")
    seconds: float = Field(default=30.0, ge=0, description="slow: report generation time")


class ReportFaults:
    """Faults in the reports themselves (as opposed to HTTP faults): consumed per report served."""

    def __init__(self) -> None:
        self._items: list[ReportFaultSpec] = []
        self._lock = threading.Lock()

    def add(self, spec: ReportFaultSpec) -> None:
        if spec.kind not in REPORT_FAULTS:
            raise ValueError(f"unknown report fault {spec.kind!r}; known: {', '.join(REPORT_FAULTS)}")
        with self._lock:
            self._items.append(spec)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def take(self, store: str, kinds: tuple[str, ...] = REPORT_FAULTS) -> ReportFaultSpec | None:
        with self._lock:
            for spec in self._items:
                if spec.kind in kinds and spec.store in ("*", store):
                    spec.count -= 1
                    if spec.count <= 0:
                        self._items.remove(spec)
                    return spec.model_copy()
        return None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s.model_dump() for s in self._items]


def install_report_controls(app: FastAPI, sim: Any, settable: tuple[str, ...]) -> None:
    """The CRM simulators' own control endpoints (besides the base /_sandbox ones):
    ``POST /_sandbox/report-faults`` adds a fault to ``sim.report_faults``; ``POST /_sandbox/settings``
    sets the ``settable`` attributes (each cast to its current type) and answers ``sim.state()``."""

    @app.post("/_sandbox/report-faults")
    async def add_report_fault(spec: ReportFaultSpec) -> dict[str, Any]:
        try:
            sim.report_faults.add(spec)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return {"ok": True, "report_faults": sim.report_faults.describe()}

    @app.post("/_sandbox/settings")
    async def sandbox_settings(request: Request) -> dict[str, Any]:
        body = await request.json()
        for key in settable:
            if key in body:
                setattr(sim, key, type(getattr(sim, key))(body[key]))
        state: dict[str, Any] = sim.state()
        return state


def apply_file_fault(body: bytes, fault: ReportFaultSpec | None) -> bytes:
    if fault is None:
        return body
    if fault.kind == "corrupt":
        return b"<html><body>Something went wrong. Please try again later.</body></html>"
    if fault.kind == "truncated":
        return body[: len(body) // 2]
    return body


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(payload: dict[str, Any], secret: bytes) -> str:
    """An HS256 JWT (what both portals hand out)."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query_params.get("token")


def parse_iso(value: str | None, what: str) -> date:
    from fastapi import HTTPException

    if not value:
        raise HTTPException(400, f"{what} is required")
    for fmt in ("%Y-%m-%d", "%d %b %Y", "%d/%m/%Y", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(value.strip(), fmt).date()
        except ValueError:
            continue
    raise HTTPException(400, f"{what}: bad date {value!r}")


def truth_range(params: dict[str, str]) -> tuple[str, date, date]:
    store = params.get("store", "all")
    start = parse_iso(params.get("from"), "from")
    end = parse_iso(params.get("to") or params.get("from"), "to")
    return store, start, end


def store_truth(
    params: dict[str, str], known: Iterable[str], totals: Callable[[str, date, date], tuple[int, float]]
) -> dict[str, Any]:
    """``/_sandbox/truth?store=CODE|all&from=D&to=D``: rows and net amount per store (and in all)."""
    from fastapi import HTTPException

    store, start, end = truth_range(params)
    known = list(known)
    codes = known if store == "all" else [store]
    if any(c not in known for c in codes):
        raise HTTPException(404, f"unknown store {store!r}")
    out: dict[str, Any] = {}
    for code in codes:
        rows, amount = totals(code, start, end)
        out[code] = {"rows": rows, "net_amount": round(amount, 2)}
    if store != "all":
        return {"store": store, **out[store]}
    return {
        "stores": out,
        "rows": sum(v["rows"] for v in out.values()),
        "net_amount": round(sum(v["net_amount"] for v in out.values()), 2),
    }


def sandbox_stores(
    crm: str, stores: dict[str, dict[str, Any]], login_url: str, user_key: str, mode_of: Callable[[str], str]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The `[[crm.stores]]` entries and credential variables `sandbox up --write-config` writes."""
    entries: list[dict[str, Any]] = []
    env: dict[str, str] = {}
    base_url = login_url.rsplit("/", 1)[0]
    for code, info in stores.items():
        prefix = f"{crm.upper()}_{code.upper()}"
        entry: dict[str, Any] = {
            "crm": crm,
            "code": code,
            "name": info["name"],
            "username_env": f"{prefix}_USERNAME",
            "password_env": f"{prefix}_PASSWORD",
            "login_url": login_url,
            "mode": mode_of(code),
            "otp_required": bool(info["otp"]),
        }
        if info["otp"]:
            entry["otp_webhook_url"] = f"{base_url}/_sandbox/otp?user={info[user_key]}"
        entries.append(entry)
        env[f"{prefix}_USERNAME"] = str(info[user_key])
        env[f"{prefix}_PASSWORD"] = str(info["password"])
    return entries, env
