"""Simulator of TumbleDry / QuickDryCleaning: subs (legacy ASP.NET app) and the reports app + API.

Shapes follow the portal as docs/crm.md describes it: login `#txtUserId/#txtPassword/#txtBranchPin/#btnLogin`,
an optional `frmVerification` one-time-code page, `/{code}/App/home` with `a#achrOrderReport` and an
overdue popup `#pnlOrderOverDuePopup`, `OrderReport.aspx` embedding iframe `#ifrmReport` with a token,
the reports app (spinner, "Download historical report" -> "Generate Report" -> From/To in
`DD Mon YYYY` -> "Request Report" -> requests table -> `a[href*='order-reports']`), the reporting API
`GET /reports/order-report`, and the 42-column order report XLSX with footer lines and messy values.

Sandbox-only endpoints: ``POST /_sandbox/report-faults`` (corrupt, truncated, missing_column,
zero_rows, slow), ``POST /_sandbox/settings`` (``report_delay``, ``overdue_popup``, ``revision``).
"""

from __future__ import annotations

import asyncio
import html
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dtime
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from storeflow.sandbox.base import ClientConfig, Simulator
from storeflow.sandbox.tumbledry.common import (
    ReportFaults,
    ReportFaultSpec,
    apply_file_fault,
    bearer,
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

HEADERS = [
    "Order Date / Time", "Order No.", "Customer Code", "Name", "Address", "Phone", "Preference", "Due Date",
    "Last Activity", "Pcs.", "Weight", "Gross Amount", "Discount", "Tax", "Net Amount", "Advance", "Paid",
    "Adjustment", "Balance", "Advance Received", "Advance Used", "Booked By", "Workshop Note", "Order Note",
    "Home Delivery", "Area Location", "Garments Inspected By", "Customer GSTIN", "Registration Source",
    "Order From POS", "Package", "Package Type", "Package Name", "Feedback", "Tags", "Comment",
    "Primary Services", "Top Up/Extra Service", "Order Status", "Last Payment Activity", "Package Payment Info",
    "Coupon Code",
]  # fmt: skip
API_KEYS = [
    "orderDate", "orderNo", "customerCode", "customerName", "address", "phone", "preference", "dueDate",
    "lastActivity", "pcs", "weight", "grossAmount", "discount", "tax", "netAmount", "advance", "paid",
    "adjustment", "balance", "advanceReceived", "advanceUsed", "bookedBy", "workshopNote", "orderNote",
    "homeDelivery", "areaLocation", "garmentsInspectedBy", "customerGstin", "registrationSource",
    "orderFromPos", "package", "packageType", "packageName", "feedback", "tags", "comment",
    "primaryServices", "topUpExtraService", "orderStatus", "lastPaymentActivity", "packagePaymentInfo",
    "couponCode",
]  # fmt: skip

STORES = {
    "a668": {"name": "Uttam Nagar", "user": "td_a668_manager", "password": "td-a668-sandbox-pass", "otp": True},
    "a817": {"name": "Kirti Nagar", "user": "td_a817_manager", "password": "td-a817-sandbox-pass", "otp": False},
}
# past the spec's two: generated stores s001, s002, ... in the same shape (no OTP), for scale runs
GENERATED = re.compile(r"^s(\d{3})$")


def generated_store(n: int) -> tuple[str, dict[str, Any]]:
    code = f"s{n:03d}"
    return code, {"name": f"Sandbox Store {n}", "user": f"td_{code}_manager", "password": f"td-{code}-sandbox-pass",
                  "otp": False}  # fmt: skip


def store_table(count: int | None = None) -> dict[str, dict[str, Any]]:
    """The simulator's stores: the spec's two, then generated ones up to ``count`` (default: the spec's)."""
    count = len(STORES) if count is None else count
    if count < len(STORES):
        raise ValueError(f"TumbleDry simulator: stores must be at least {len(STORES)} (the spec's), got {count}")
    return {**STORES, **dict(generated_store(n) for n in range(1, count - len(STORES) + 1))}


def store_name(code: str) -> str:
    if code in STORES:
        return str(STORES[code]["name"])
    match = GENERATED.match(code)
    return str(generated_store(int(match.group(1)))[1]["name"]) if match else code


NAMES = ["Aarav Sharma", "Priya Verma", "Rohan Gupta", "Neha Singh", "Vikram Rao", "Ananya Iyer", "Kabir Khan"]
SERVICES = ["Dry Clean", "Laundry", "Steam Iron", "Shoe Clean", "Curtain Clean"]
SESSION_COOKIE = "ASP.NET_SessionId"
DISPLAY = "%d %b %Y"


def order_rows(seed: int, store: str, day: date, revision: int = 0) -> list[dict[str, Any]]:
    """One store's orders on one day, by report header (clean values; messiness is added when served)."""
    rng = day_rng("td", seed, store, day)
    area = store_name(store)
    rows = []
    for i in range(rng.randint(8, 30)):
        at = datetime.combine(day, dtime(9)) + timedelta(minutes=rng.randrange(600))
        pcs = rng.randint(1, 14)
        gross = round(pcs * money(rng, 60, 420), 2)
        discount = round(gross * rng.choice([0, 0, 0.05, 0.1]), 2)
        tax = round((gross - discount) * 0.18, 2)
        net = round(gross - discount + tax, 2)
        paid = rng.choice([0.0, net, round(net / 2, 2)])
        status = rng.choice(["Pending", "In Process", "Ready", "Delivered"])
        if revision and i % 5 == 0:  # a later download sees these orders delivered and re-priced
            status, net = "Delivered", round(net + 10 * revision, 2)
        rows.append(
            {
                "Order Date / Time": at,
                "Order No.": f"{store.upper()}{day:%y%m%d}{i + 1:03d}",
                "Customer Code": f"C{rng.randrange(10**5):05d}",
                "Name": rng.choice(NAMES),
                "Address": f"{rng.randint(1, 300)}, Block {rng.choice('ABCDE')}, {area}",
                "Phone": messy_phone(rng),
                "Preference": rng.choice(["", "Fold", "Hanger"]),
                "Due Date": day + timedelta(days=rng.randint(1, 4)),
                "Last Activity": _last_activity(at, rng.randrange(3), i),
                "Pcs.": pcs,
                "Weight": round(pcs * 0.4, 1),
                "Gross Amount": gross,
                "Discount": discount,
                "Tax": tax,
                "Net Amount": net,
                "Advance": 0.0,
                "Paid": paid,
                "Adjustment": 0.0,
                "Balance": round(net - paid, 2),
                "Advance Received": 0.0,
                "Advance Used": 0.0,
                "Booked By": rng.choice(["Counter", "Pickup Boy", "App"]),
                "Workshop Note": "",
                "Order Note": rng.choice(["", "", "Urgent", "Handle with care"]),
                "Home Delivery": rng.choice(["Yes", "No"]),
                "Area Location": rng.choice(["Sector 1", "Sector 2", "Main Market"]),
                "Garments Inspected By": rng.choice(["", "Ravi", "Sunita"]),
                "Customer GSTIN": "",
                "Registration Source": rng.choice(["Store", "App", "Website"]),
                "Order From POS": rng.choice(["Yes", "No"]),
                "Package": "",
                "Package Type": "",
                "Package Name": "",
                "Feedback": "",
                "Tags": "",
                "Comment": "",
                "Primary Services": rng.choice(SERVICES),
                "Top Up/Extra Service": rng.choice(["", "Stain Removal"]),
                "Order Status": status,
                "Last Payment Activity": "Payment Received" if paid else "",
                "Package Payment Info": "",
                "Coupon Code": rng.choice(["", "", "WELCOME10"]),
            }
        )
    return rows


def _last_activity(ordered: datetime, stage: int, index: int) -> datetime:
    """When the order last moved (booked, sent to the workshop, marked ready): a date/time, like the
    report's other time columns. ``stage`` comes from the same random draw the old status word used,
    so every other generated value stays the same."""
    return ordered + timedelta(minutes=(2, 185, 1450)[stage] + index % 37)


def report_rows(seed: int, store: str, start: date, end: date, revision: int = 0) -> list[dict[str, Any]]:
    rows = [r for day in days(start, end) for r in order_rows(seed, store, day, revision)]
    rows.sort(key=lambda r: r["Order Date / Time"], reverse=True)
    return rows


def _xlsx_cell(header: str, value: Any, rng: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%d %b %Y %I:%M %p")
    if isinstance(value, date):
        return value.strftime(DISPLAY)
    if header in {"Gross Amount", "Net Amount", "Balance", "Paid"} and isinstance(value, float):
        return messy_amount(value, rng)
    return value


def order_report_xlsx(
    rows: list[dict[str, Any]], start: date, end: date, drop: str | None = None, seed: int = 0
) -> bytes:
    import random

    rng = random.Random(f"xlsx:{seed}:{start}:{end}")
    header = [h for h in HEADERS if h != drop]
    body = [[_xlsx_cell(h, r[h], rng) for h in header] for r in rows]
    footer = [
        [f"Total records : {len(rows)}"],
        [f"Report generated for {start.strftime(DISPLAY)} - {end.strftime(DISPLAY)}"],
    ]
    return xlsx_bytes(header, body, footer)


@dataclass
class ReportRequest:
    id: str
    store: str
    start: date
    end: date
    requested_at: datetime
    ready_at: float
    fault: ReportFaultSpec | None = None


class TumbleDrySimulator(Simulator):
    name = "tumbledry"
    description = "TumbleDry / QuickDryCleaning CRM (subs + reports app + reporting API)"
    report_delay = 1.0  # seconds a requested report stays "pending"

    def __init__(self, seed: int = 0, stores: int | None = None, report_delay: float | None = None) -> None:
        super().__init__(seed)
        self.stores = store_table(stores)
        if report_delay is not None:
            self.report_delay = float(report_delay)
        self.sessions: dict[str, str] = {}  # session id -> store code
        self.pending_otp: dict[str, str] = {}  # pending id -> store code
        self.tokens: dict[str, str] = {}  # reports token -> session id
        self.requests_by_store: dict[str, list[ReportRequest]] = {}
        self.report_faults = ReportFaults()
        self.overdue_popup = True
        self.revision = 0
        self.logins = 0
        self.downloads = 0
        self._secret = f"td-sandbox-{seed}".encode()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ conventions
    def state(self) -> dict[str, Any]:
        return {
            "sessions": len(self.sessions),
            "logins": self.logins,
            "downloads": self.downloads,
            "report_delay": self.report_delay,
            "stores": len(self.stores),
            "overdue_popup": self.overdue_popup,
            "revision": self.revision,
            "report_faults": self.report_faults.describe(),
        }

    def expire_sessions(self) -> None:
        with self._lock:
            self.sessions.clear()
            self.tokens.clear()

    def truth(self, params: dict[str, str]) -> dict[str, Any]:
        def totals(code: str, start: date, end: date) -> tuple[int, float]:
            rows = report_rows(self.seed, code, start, end, self.revision)
            return len(rows), sum(r["Net Amount"] for r in rows)

        return store_truth(params, self.stores, totals)

    def client_config(self, base_url: str) -> ClientConfig:
        stores, env = sandbox_stores(
            "td", self.stores, f"{base_url}/Login", "user", lambda code: "browser" if code == "a668" else "api"
        )
        return ClientConfig(
            toml={"crm": {"td_base_url": base_url, "td_reports_url": base_url, "stores": stores}},
            env=env,
        )

    # ------------------------------------------------------------ helpers
    def _session_store(self, request: Request) -> str | None:
        sid = request.cookies.get(SESSION_COOKIE)
        return self.sessions.get(sid) if sid else None

    def _token_store(self, request: Request) -> str:
        token = bearer(request)
        sid = self.tokens.get(token or "")
        store = self.sessions.get(sid) if sid else None
        if store is None:
            raise HTTPException(401 if token else 403, "invalid or expired token")
        return store

    def _new_session(self, store: str) -> str:
        sid = secrets.token_hex(12)
        with self._lock:
            self.sessions[sid] = store
        self.logins += 1
        return sid

    def _issue_token(self, sid: str, store: str) -> str:
        now = int(time.time())
        token = make_jwt({"storeCode": store, "sid": sid[:6], "iat": now, "exp": now + 86400}, self._secret)
        with self._lock:
            self.tokens[token] = sid
        return token

    # ------------------------------------------------------------ routes
    def install(self, app: FastAPI) -> None:
        sim = self

        install_report_controls(app, sim, ("report_delay", "overdue_popup", "revision"))

        @app.get("/", response_class=RedirectResponse)
        async def root() -> RedirectResponse:
            return RedirectResponse("/Login", 302)

        @app.get("/Login", response_class=HTMLResponse)
        async def login_page(error: str = "") -> str:
            return _page("Login", LOGIN_FORM.format(error=html.escape(error)))

        @app.post("/Login")
        async def login(request: Request) -> Response:
            form = await request.form()
            user, password, pin = (str(form.get(k, "")).strip() for k in ("txtUserId", "txtPassword", "txtBranchPin"))
            info = sim.stores.get(pin.lower())
            if info is None or user != info["user"] or password != info["password"]:
                return RedirectResponse("/Login?error=Invalid+User+Id+or+Password", 303)
            store = pin.lower()
            if info["otp"]:
                pending = secrets.token_hex(8)
                sim.pending_otp[pending] = store
                sim.otp.issue(str(info["user"]))
                response: Response = RedirectResponse(f"/Login/frmVerification.aspx?ref={pending}", 303)
                return response
            response = RedirectResponse(f"/{store}/App/home", 303)
            response.set_cookie(SESSION_COOKIE, sim._new_session(store), httponly=True)
            return response

        @app.get("/Login/frmVerification.aspx", response_class=HTMLResponse)
        async def verification_page(ref: str, error: str = "") -> str:
            if ref not in sim.pending_otp:
                raise HTTPException(404, "verification expired; log in again")
            return _page("Verification", OTP_FORM.format(ref=html.escape(ref), error=html.escape(error)))

        @app.post("/Login/frmVerification.aspx")
        async def verify(request: Request) -> Response:
            form = await request.form()
            ref, code = str(form.get("ref", "")), str(form.get("txtOTP", ""))
            store = sim.pending_otp.get(ref)
            if store is None:
                return RedirectResponse("/Login?error=Verification+expired", 303)
            if not sim.otp.check(str(sim.stores[store]["user"]), code):
                return RedirectResponse(f"/Login/frmVerification.aspx?ref={ref}&error=Invalid+code", 303)
            sim.pending_otp.pop(ref, None)
            response = RedirectResponse(f"/{store}/App/home", 303)
            response.set_cookie(SESSION_COOKIE, sim._new_session(store), httponly=True)
            return response

        @app.get("/{store}/App/home", response_class=HTMLResponse)
        async def home(store: str, request: Request) -> Response:
            if sim._session_store(request) != store:
                return RedirectResponse("/Login", 302)
            popup = OVERDUE_POPUP if sim.overdue_popup else ""
            return HTMLResponse(_page("Home", HOME.format(store=store, popup=popup)))

        @app.get("/{store}/App/Reports/OrderReport.aspx", response_class=HTMLResponse)
        async def order_report_page(store: str, request: Request) -> Response:
            if sim._session_store(request) != store:
                return RedirectResponse("/Login", 302)
            sid = request.cookies[SESSION_COOKIE]
            token = sim._issue_token(sid, store)
            src = f"{sim.base_url}/en/order-report?token={token}&source=store&storeCode={store}"
            return HTMLResponse(_page("Order Report", IFRAME.format(src=html.escape(src))))

        @app.get("/en/order-report", response_class=HTMLResponse)
        async def reports_app(token: str = "") -> Response:
            if token not in sim.tokens:
                return HTMLResponse(_page("Reports", "<p id='sessionExpired'>Session expired</p>"), 401)
            return HTMLResponse(_page("Order Report", REPORTS_APP))

        @app.post("/reports/order-report/requests")
        async def request_report(request: Request) -> dict[str, Any]:
            store = sim._token_store(request)
            body = await request.json()
            start = parse_iso(body.get("fromDate"), "fromDate")
            end = parse_iso(body.get("toDate"), "toDate")
            if start > end:
                raise HTTPException(400, "fromDate is after toDate")
            fault = sim.report_faults.take(store)
            delay = fault.seconds if fault is not None and fault.kind == "slow" else sim.report_delay
            item = ReportRequest(
                secrets.token_hex(6), store, start, end, datetime.now(), time.monotonic() + delay, fault
            )
            with sim._lock:
                sim.requests_by_store.setdefault(store, []).insert(0, item)
            return {"success": True, "data": _request_json(item, token=bearer(request) or "")}

        @app.get("/reports/order-report/requests")
        async def list_requests(request: Request) -> dict[str, Any]:
            store = sim._token_store(request)
            token = bearer(request) or ""
            return {"success": True, "data": [_request_json(r, token) for r in sim.requests_by_store.get(store, [])]}

        @app.get("/order-reports/{request_id}")
        async def download_report(request_id: str, request: Request) -> Response:
            store = sim._token_store(request)
            item = next((r for r in sim.requests_by_store.get(store, []) if r.id == request_id), None)
            if item is None:
                raise HTTPException(404, "no such report")
            if time.monotonic() < item.ready_at:
                raise HTTPException(409, "report is still being generated")
            fault = item.fault
            rows = report_rows(sim.seed, store, item.start, item.end, sim.revision)
            if fault is not None and fault.kind == "zero_rows":
                rows = []
            drop = (fault.column or "Net Amount") if fault is not None and fault.kind == "missing_column" else None
            body = apply_file_fault(order_report_xlsx(rows, item.start, item.end, drop, sim.seed), fault)
            sim.downloads += 1
            name = f"OrderReport_{store}_{item.start:%d%m%Y}_{item.end:%d%m%Y}.xlsx"
            return Response(
                body,
                media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                headers={"Content-Disposition": f'attachment; filename="{name}"'},
            )

        @app.get("/reports/order-report")
        async def order_report_api(
            request: Request,
            startDate: str = "",
            endDate: str = "",
            page: int = 1,
            pageSize: int = 50,
            expandData: bool = False,
        ) -> Response:
            store = sim._token_store(request)
            start, end = parse_iso(startDate, "startDate"), parse_iso(endDate, "endDate")
            fault = sim.report_faults.take(store)
            if fault is not None and fault.kind == "slow":
                await asyncio.sleep(min(fault.seconds, 60))
            elif page == 1:
                await asyncio.sleep(sim.report_delay)  # the report query itself
            if fault is not None and fault.kind in {"corrupt", "truncated"}:
                return Response(b'{"success": true, "data": [{"orderNo": ', media_type="application/json")
            rows = report_rows(sim.seed, store, start, end, sim.revision)
            if fault is not None and fault.kind == "zero_rows":
                rows = []
            size = max(1, min(pageSize, 500))
            chunk = rows[(page - 1) * size : page * size]
            drop = (fault.column or "Net Amount") if fault is not None and fault.kind == "missing_column" else None
            items = [_api_row(r, expandData, drop) for r in chunk]
            return JSONResponse(
                {
                    "success": True,
                    "data": items,
                    "pagination": {"page": page, "pageSize": size, "total": len(rows)},
                }
            )


def _api_row(row: dict[str, Any], expand: bool, drop: str | None) -> dict[str, Any]:
    out = {}
    for key, header in zip(API_KEYS, HEADERS, strict=True):
        if header == drop:
            continue
        value = row[header]
        if isinstance(value, datetime):
            value = value.strftime("%Y-%m-%dT%H:%M:%S")
        elif isinstance(value, date):
            value = value.isoformat()
        out[key] = value
    if not expand:
        keep = {"orderDate", "orderNo", "customerName", "netAmount", "orderStatus"}
        out = {k: v for k, v in out.items() if k in keep}
    return out


def _request_json(item: ReportRequest, token: str) -> dict[str, Any]:
    ready = time.monotonic() >= item.ready_at
    return {
        "id": item.id,
        "duration": f"{item.start.strftime(DISPLAY)} - {item.end.strftime(DISPLAY)}",
        "requestedOn": item.requested_at.strftime("%d %b %Y %I:%M %p"),
        "status": "ready" if ready else "pending",
        "url": f"/order-reports/{item.id}?token={token}" if ready else None,
    }


def _page(title: str, body: str) -> str:
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>{body}</body></html>"


LOGIN_FORM = """
<form method="post" action="/Login" id="form1">
  <p id="lblError" style="color:red">{error}</p>
  <input id="txtUserId" name="txtUserId" placeholder="User Id">
  <input id="txtPassword" name="txtPassword" type="password" placeholder="Password">
  <input id="txtBranchPin" name="txtBranchPin" placeholder="Branch Pin">
  <input id="btnLogin" type="submit" value="Login">
</form>"""

OTP_FORM = """
<form method="post" action="/Login/frmVerification.aspx" id="frmVerification">
  <p id="lblError" style="color:red">{error}</p>
  <p>Enter the one-time code sent to your registered mobile number.</p>
  <input type="hidden" name="ref" value="{ref}">
  <input id="txtOTP" name="txtOTP" inputmode="numeric" placeholder="OTP">
  <input id="btnVerify" type="submit" value="Verify">
</form>"""

HOME = """
<h1>Store {store}</h1>
<nav><a id="achrOrderReport" href="/{store}/App/Reports/OrderReport.aspx">Order Report</a></nav>
{popup}"""

OVERDUE_POPUP = """
<div id="pnlOrderOverDuePopup"
     style="position:fixed;top:0;left:0;width:100%;height:100%;background:rgba(0,0,0,.5);z-index:99">
  <div style="background:#fff;margin:10% auto;width:300px;padding:1em">
    <p>You have orders overdue for delivery.</p>
    <button id="btnOverDueClose" type="button"
            onclick="document.getElementById('pnlOrderOverDuePopup').style.display='none'">Close</button>
  </div>
</div>"""

IFRAME = """<h1>Order Report</h1><iframe id="ifrmReport" src="{src}" style="width:100%;height:600px"></iframe>"""

REPORTS_APP = """
<div class="ant-spin" id="spin">Loading...</div>
<div id="app" style="display:none">
  <button id="btnHistorical" type="button">Download historical report</button>
  <div id="historical" style="display:none">
    <button id="btnGenerate" type="button">Generate Report</button>
    <div id="genForm" style="display:none">
      <input id="fromDate" placeholder="From (DD Mon YYYY)">
      <input id="toDate" placeholder="To (DD Mon YYYY)">
      <button id="btnRequest" type="button">Request Report</button>
      <span id="requestError" style="color:red"></span>
    </div>
    <h3>Report Requests</h3>
    <table id="tblRequests"><thead><tr><th>Report Duration</th><th>Requested On</th><th>Status</th>
      <th>Action</th></tr></thead><tbody id="requestRows"></tbody></table>
  </div>
</div>
<script>
const token = new URLSearchParams(location.search).get("token");
const auth = {"Authorization": "Bearer " + token};
let lastHtml = "";
setTimeout(() => { spin.style.display = "none"; app.style.display = "block"; }, 300);
btnHistorical.onclick = () => { historical.style.display = "block"; refresh(); };
btnGenerate.onclick = () => { genForm.style.display = "block"; };
btnRequest.onclick = async () => {
  const r = await fetch("/reports/order-report/requests", {method: "POST",
    headers: {...auth, "Content-Type": "application/json"},
    body: JSON.stringify({fromDate: fromDate.value, toDate: toDate.value})});
  requestError.textContent = r.ok ? "" : "Request failed (" + r.status + ")";
  refresh();
};
const ENT = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"};
function esc(s) { return String(s).replace(/[&<>"]/g, c => ENT[c]); }
async function refresh() {
  const r = await fetch("/reports/order-report/requests", {headers: auth});
  if (!r.ok) { requestRows.innerHTML = "<tr><td colspan=4 id='sessionExpired'>Session expired</td></tr>"; return; }
  const data = (await r.json()).data;
  const html = data.map(x => "<tr><td>" + esc(x.duration) + "</td><td>" + esc(x.requestedOn) + "</td><td>" +
    x.status + "</td><td>" + (x.url ? "<a href='" + esc(x.url) + "'>Download</a>" : "") + "</td></tr>").join("");
  if (html !== lastHtml) { requestRows.innerHTML = html; lastHtml = html; }
}
setInterval(() => { if (historical.style.display === "block") refresh(); }, 400);
</script>"""
