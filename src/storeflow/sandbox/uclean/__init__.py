"""Simulator of the UClean store CRM (store.ucleanlaundry.com).

Shapes follow the portal as docs/crm.md describes it: `/login` with `#email`, `#password`,
`button[type=submit]` and an optional OTP step; the login XHR answers
``{"data":{"token":...}}`` and the page keeps ``Bearer <jwt>`` in localStorage
(`token` and `authToken`); HS256 JWT ``{id, iat, exp}`` (30 days). Report APIs:
``GET /api/v1/sales/export-report?type=GST&format=excel`` (legacy GST XLSX),
``POST /api/v1/stores/generateGST?franchise=UCLEAN`` and the paged
``GET /api/v1/stores/report/tax-report``. Sandbox-only: ``POST /_sandbox/report-faults``,
``POST /_sandbox/settings`` (``revision``, ``report_delay``).
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import re
import threading
import time
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from storeflow.sandbox.base import ClientConfig, Simulator
from storeflow.sandbox.tumbledry.common import (
    ReportFaults,
    apply_file_fault,
    day_rng,
    days,
    install_report_controls,
    make_jwt,
    messy_amount,
    messy_phone,
    money,
    parse_iso,
    sandbox_stores,
    store_truth,
    xlsx_bytes,
)

XLSX_HEADERS = [
    "S.No.", "Booking ID", "Invoice No.", "Invoice Date", "Customer Name", "Customer Ph. No.", "Payment Status",
    "Customer GSTIN", "Place of Supply", "Taxable Value", "CGST", "SGST", "Total Invoice Value",
]  # fmt: skip
STORES = {
    "sector56": {
        "id": 5601,
        "name": "Sector 56, Gurugram",
        "email": "sector56@uclean.sandbox",
        "password": "uc-sector56-sandbox-pass",
        "otp": True,
    },
    "sushantlok1": {
        "id": 5602,
        "name": "Sushant Lok 1, Gurugram",
        "email": "sushantlok1@uclean.sandbox",
        "password": "uc-sushantlok1-sandbox-pass",
        "otp": False,
    },
}
# past the spec's two: generated stores sandbox01, sandbox02, ... in the same shape (no OTP), for scale runs
GENERATED = re.compile(r"^sandbox(\d{2,})$")


def generated_store(n: int) -> tuple[str, dict[str, Any]]:
    code = f"sandbox{n:02d}"
    return code, {"id": 5700 + n, "name": f"Sandbox {n}, Gurugram", "email": f"{code}@uclean.sandbox",
                  "password": f"uc-{code}-sandbox-pass", "otp": False}  # fmt: skip


def store_table(count: int | None = None) -> dict[str, dict[str, Any]]:
    """The simulator's stores: the spec's two, then generated ones up to ``count`` (default: the spec's)."""
    count = len(STORES) if count is None else count
    if count < len(STORES):
        raise ValueError(f"UClean simulator: stores must be at least {len(STORES)} (the spec's), got {count}")
    return {**STORES, **dict(generated_store(n) for n in range(1, count - len(STORES) + 1))}


def store_info(code: str) -> dict[str, Any]:
    if code in STORES:
        return STORES[code]
    match = GENERATED.match(code)
    return generated_store(int(match.group(1)))[1] if match else {"id": 0, "name": code}


NAMES = ["Ishaan Mehta", "Diya Kapoor", "Arjun Nair", "Sara Ali", "Kavya Reddy", "Dev Malhotra"]
SERVICES = ["Wash & Fold", "Wash & Iron", "Dry Clean", "Steam Press", "Premium Laundry"]
TOKEN_DAYS = 30


def gst_rows(seed: int, store: str, day: date, revision: int = 0) -> list[dict[str, Any]]:
    """One store's invoices on one day, in the tax-report API's field names (clean values)."""
    rng = day_rng("uc", seed, store, day)
    info = store_info(store)
    rows = []
    for i in range(rng.randint(5, 25)):
        at = datetime.combine(day, dtime(8)) + timedelta(minutes=rng.randrange(720))
        qty = rng.randint(1, 12)
        taxable = round(qty * money(rng, 50, 300), 2)
        cgst = sgst = round(taxable * 0.09, 2)
        status = rng.choice(["Paid", "Paid", "Unpaid", "Partially Paid"])
        if revision and i % 4 == 0:
            status, taxable = "Paid", round(taxable + 5 * revision, 2)
            cgst = sgst = round(taxable * 0.09, 2)
        rows.append(
            {
                "order_number": f"UC{info['id']}{day:%y%m%d}{i + 1:03d}",
                "invoice_number": f"INV/{info['id']}/{day:%y%m}/{i + 1:04d}",
                "invoice_date": at,
                "name": rng.choice(NAMES),
                "customer_phone": messy_phone(rng),
                "customer_gst": rng.choice(["", "", "", "06ABCDE1234F1Z5"]),
                "service_names": rng.choice(SERVICES),
                "cloth_item_names": rng.choice(["Shirt, Trouser", "Saree", "Bedsheet", "Jacket, Shirt"]),
                "cloth_quantity": qty,
                "address": f"House {rng.randint(1, 900)}, {info['name']}",
                "store_address": str(info["name"]),
                "city_name": "Gurugram",
                "taxable_value": taxable,
                "cgst": cgst,
                "sgst": sgst,
                "total_tax": round(cgst + sgst, 2),
                "final_amount": round(taxable + cgst + sgst, 2),
                "payment_status": status,
            }
        )
    return rows


def report_rows(seed: int, store: str, start: date, end: date, revision: int = 0) -> list[dict[str, Any]]:
    rows = [r for day in days(start, end) for r in gst_rows(seed, store, day, revision)]
    rows.sort(key=lambda r: r["invoice_date"], reverse=True)
    return rows


def gst_xlsx(rows: list[dict[str, Any]], drop: str | None = None, seed: int = 0) -> bytes:
    """The legacy GST export: S.No. ... Total Invoice Value, dd/mm/yyyy dates, a totals row."""
    rng = random.Random(f"ucxlsx:{seed}:{len(rows)}")
    body = []
    for n, r in enumerate(rows, start=1):
        full = {
            "S.No.": n,
            "Booking ID": r["order_number"],
            "Invoice No.": r["invoice_number"],
            "Invoice Date": r["invoice_date"].strftime("%d/%m/%Y"),
            "Customer Name": r["name"],
            "Customer Ph. No.": r["customer_phone"],
            "Payment Status": r["payment_status"],
            "Customer GSTIN": r["customer_gst"],
            "Place of Supply": "Haryana",
            "Taxable Value": messy_amount(r["taxable_value"], rng),
            "CGST": r["cgst"],
            "SGST": r["sgst"],
            "Total Invoice Value": messy_amount(r["final_amount"], rng),
        }
        body.append([full[h] for h in XLSX_HEADERS if h != drop])
    header = [h for h in XLSX_HEADERS if h != drop]
    totals = ["", "Total", "", "", "", "", "", "", ""]
    totals += [
        round(sum(r["taxable_value"] for r in rows), 2),
        round(sum(r["cgst"] for r in rows), 2),
        round(sum(r["sgst"] for r in rows), 2),
        round(sum(r["final_amount"] for r in rows), 2),
    ]
    return xlsx_bytes(header, body, [totals[: len(header)]])


class UCleanSimulator(Simulator):
    name = "uclean"
    description = "UClean store CRM (login with localStorage token, GST export/generate, paged tax report)"
    report_delay = 1.0  # seconds the portal spends building a report (export, generate, first API page)

    def __init__(self, seed: int = 0, stores: int | None = None, report_delay: float | None = None) -> None:
        super().__init__(seed)
        self.stores = store_table(stores)
        if report_delay is not None:
            self.report_delay = float(report_delay)
        self.tokens: dict[str, str] = {}  # jwt -> store code
        self.pending_otp: dict[str, str] = {}  # email -> store
        self.report_faults = ReportFaults()
        self.revision = 0
        self.logins = 0
        self.downloads = 0
        self.file_clients: list[str] = []  # User-Agent of each export/generate call (browser or not)
        self._secret = f"uc-sandbox-{seed}".encode()
        self._lock = threading.Lock()

    def state(self) -> dict[str, Any]:
        return {
            "tokens": len(self.tokens),
            "logins": self.logins,
            "downloads": self.downloads,
            "file_clients": self.file_clients[-10:],
            "revision": self.revision,
            "report_delay": self.report_delay,
            "stores": len(self.stores),
            "report_faults": self.report_faults.describe(),
        }

    def expire_sessions(self) -> None:
        with self._lock:
            self.tokens.clear()

    def truth(self, params: dict[str, str]) -> dict[str, Any]:
        def totals(code: str, start: date, end: date) -> tuple[int, float]:
            rows = report_rows(self.seed, code, start, end, self.revision)
            return len(rows), sum(r["final_amount"] for r in rows)

        return store_truth(params, self.stores, totals)

    def client_config(self, base_url: str) -> ClientConfig:
        # the spec's export call for one store, the paged API observed in practice for the other
        stores, env = sandbox_stores(
            "uc", self.stores, f"{base_url}/login", "email", lambda code: "export" if code == "sector56" else "api"
        )
        return ClientConfig(toml={"crm": {"uc_base_url": base_url, "stores": stores}}, env=env)

    # ------------------------------------------------------------ helpers
    def _issue(self, store: str) -> str:
        now = int(time.time())
        payload = {"id": self.stores[store]["id"], "iat": now, "exp": now + TOKEN_DAYS * 86400}
        token = make_jwt(payload, self._secret + str(len(self.tokens) + self.logins).encode())
        with self._lock:
            self.tokens[token] = store
        self.logins += 1
        return token

    def _store(self, request: Request) -> str:
        # UClean's APIs take the token only as `Authorization: Bearer` (no ?token= like TumbleDry's reports)
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if not token:
            raise HTTPException(401, "Unauthorized: no token")
        store = self.tokens.get(token)
        if store is None:
            raise HTTPException(403, "Forbidden: invalid or expired token")
        return store

    def _file(self, store: str, start: date, end: date) -> Response:
        fault = self.report_faults.take(store)
        rows = report_rows(self.seed, store, start, end, self.revision)
        if fault is not None and fault.kind == "zero_rows":
            rows = []
        drop = (fault.column or "Total Invoice Value") if fault is not None and fault.kind == "missing_column" else None
        body = apply_file_fault(gst_xlsx(rows, drop, self.seed), fault)
        self.downloads += 1
        return Response(
            body,
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="GST_Report_{start}_{end}.xlsx"'},
        )

    async def _slow(self, store: str) -> None:
        fault = self.report_faults.take(store, ("slow",))
        await asyncio.sleep(min(fault.seconds, 60) if fault is not None else self.report_delay)

    # ------------------------------------------------------------ routes
    def install(self, app: FastAPI) -> None:
        sim = self

        install_report_controls(app, sim, ("revision", "report_delay"))

        @app.get("/login", response_class=HTMLResponse)
        async def login_page() -> str:
            return LOGIN_PAGE

        @app.get("/dashboard", response_class=HTMLResponse)
        async def dashboard() -> str:
            return DASHBOARD_PAGE

        @app.post("/api/v1/auth/login")
        async def login(request: Request) -> JSONResponse:
            body = await request.json()
            email, password = str(body.get("email", "")).strip().lower(), str(body.get("password", ""))
            store = next((c for c, s in sim.stores.items() if s["email"] == email), None)
            if store is None or sim.stores[store]["password"] != password:
                return JSONResponse({"success": False, "message": "Invalid email or password"}, 401)
            if sim.stores[store]["otp"]:
                sim.pending_otp[email] = store
                sim.otp.issue(email)
                return JSONResponse({"success": True, "data": {"otp_required": True}})
            return JSONResponse({"success": True, "data": {"token": sim._issue(store)}})

        @app.post("/api/v1/auth/verify-otp")
        async def verify_otp(request: Request) -> JSONResponse:
            body = await request.json()
            email, code = str(body.get("email", "")).strip().lower(), str(body.get("otp", ""))
            store = sim.pending_otp.get(email)
            if store is None or not sim.otp.check(email, code):
                return JSONResponse({"success": False, "message": "Invalid OTP"}, 401)
            sim.pending_otp.pop(email, None)
            return JSONResponse({"success": True, "data": {"token": sim._issue(store)}})

        @app.get("/api/v1/sales/export-report")
        async def export_report(request: Request, type: str = "", format: str = "") -> Response:
            store = sim._store(request)
            sim.file_clients.append(request.headers.get("user-agent", ""))
            if type.upper() != "GST" or format.lower() != "excel":
                raise HTTPException(400, "type=GST&format=excel expected")
            q = request.query_params
            start = parse_iso(q.get("from_date") or q.get("from"), "from_date")
            end = parse_iso(q.get("to_date") or q.get("to"), "to_date")
            await sim._slow(store)
            return sim._file(store, start, end)

        @app.post("/api/v1/stores/generateGST")
        async def generate_gst(request: Request, franchise: str = "") -> Response:
            store = sim._store(request)
            sim.file_clients.append(request.headers.get("user-agent", ""))
            if franchise.upper() != "UCLEAN":
                raise HTTPException(400, "franchise=UCLEAN expected")
            body = await request.json()
            start = parse_iso(body.get("from_date"), "from_date")
            end = parse_iso(body.get("to_date"), "to_date")
            await sim._slow(store)
            return sim._file(store, start, end)

        @app.get("/api/v1/stores/report/tax-report")
        async def tax_report(request: Request, page: int = 1, limit: int = 20) -> Response:
            store = sim._store(request)
            q = request.query_params
            start = parse_iso(q.get("from"), "from")
            end = parse_iso(q.get("to"), "to")
            # the report is built when its first page is asked for (whatever the page size); later pages are cut from it
            fault = sim.report_faults.take(store) if page == 1 else None
            if fault is not None and fault.kind == "slow":
                await asyncio.sleep(min(fault.seconds, 60))
            elif page == 1:
                await asyncio.sleep(sim.report_delay)
            if fault is not None and fault.kind in {"corrupt", "truncated"}:
                return JSONResponse({"success": True, "data": {"rows": "unavailable"}})
            rows = report_rows(sim.seed, store, start, end, sim.revision)
            if fault is not None and fault.kind == "zero_rows":
                rows = []
            size = max(1, min(limit, 100))
            chunk = rows[(page - 1) * size : page * size]
            drop = (fault.column or "final_amount") if fault is not None and fault.kind == "missing_column" else None
            data = []
            for r in chunk:
                item = {k: v for k, v in r.items() if k != drop}
                item["invoice_date"] = r["invoice_date"].strftime("%Y-%m-%d %H:%M:%S")
                data.append(item)
            return JSONResponse({"success": True, "data": data})


def decode_payload(token: str) -> dict[str, Any]:
    """The JWT payload (no signature check): what the client reads for ``exp``."""
    part = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return data


LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>UClean Store Login</title></head><body>
<form id="loginForm">
  <input id="email" type="email" placeholder="Email">
  <input id="password" type="password" placeholder="Password">
  <button type="submit">Login</button>
  <p id="loginError" style="color:red"></p>
</form>
<form id="otpForm" style="display:none">
  <p>Enter the OTP sent to your registered mobile number.</p>
  <input id="otp" inputmode="numeric" placeholder="OTP">
  <button id="verifyOtp" type="submit">Verify</button>
</form>
<script>
function keep(token) {
  localStorage.setItem("token", "Bearer " + token);
  localStorage.setItem("authToken", "Bearer " + token);
  location.href = "/dashboard";
}
loginForm.onsubmit = async (e) => {
  e.preventDefault();
  const r = await fetch("/api/v1/auth/login", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({email: email.value, password: password.value})});
  const j = await r.json();
  if (!r.ok) { loginError.textContent = j.message || "Login failed"; return; }
  if (j.data.otp_required) { loginForm.style.display = "none"; otpForm.style.display = "block"; return; }
  keep(j.data.token);
};
otpForm.onsubmit = async (e) => {
  e.preventDefault();
  const r = await fetch("/api/v1/auth/verify-otp", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({email: email.value, otp: otp.value})});
  const j = await r.json();
  if (!r.ok) { loginError.textContent = j.message || "Invalid OTP"; loginForm.style.display = "block"; return; }
  keep(j.data.token);
};
</script></body></html>"""

DASHBOARD_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>UClean Dashboard</title></head><body>
<h1 id="dashboard">Dashboard</h1>
<script>if (!localStorage.getItem("token")) { location.href = "/login"; }</script>
</body></html>"""
