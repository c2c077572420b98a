"""Simulator of the Hallmark Connect portal (a Salesforce Experience Cloud community).

Reproduces the portal as docs/hallmark.md describes it: a landing page with "Retailer Login",
a PingOne-style sign-on (password on the same page or on a second step), an MFA
page (sandbox code from ``/_sandbox/otp`` or the sandbox user's TOTP secret),
``/secur/frontdoor.jsp`` -> ``/s/`` with the Aura token in localStorage and the
fwuid in the bootstrap script, and the Aura endpoint with the five Apex actions
over deterministic data. Sessions expire, the fwuid rotates and a per-session
rate limit answers 429 + Retry-After; ``POST /_sandbox/hallmark`` tunes all of it,
including in which of Salesforce's forms an expired session (``session_signal``)
and an outdated fwuid (``out_of_sync_signal``) are answered.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pyotp
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from storeflow.sandbox.base import ClientConfig, Simulator
from storeflow.sandbox.hallmark_data import (
    DATA_START,
    PortalData,
    SimBilling,
    SimOrder,
    SimStore,
    billing_row,
    order_row,
    parse_day,
)

USER = "buyer@banners.example"
PASSWORD = "sandbox-hallmark-pass"
# Salesforce's wording, as public clients quote it (docs/hallmark.md lists the sources)
ILLEGAL_SESSION = (
    "INVALID_SESSION_ID: Invalid Session ID found in SessionHeader: Illegal Session. "
    "This error usually occurs after a session expires or a user logs out."
)
PAGE_CHANGED = (
    "This page has changes since the last refresh. To get the latest updates, save your work and finish "
    "your conversations before refreshing the page."
)
CSRF_GUARD = "while(1);\n"
DEFAULT_HANDLER = (
    '"defaultHandler":function(){try{$A.clientService.setOutdated()}catch(e){$L.clientService.setOutdated()}}'
)


@dataclass
class SimSession:
    sid: str
    user: str
    token: str
    expires_at: float
    tokens: float | None = None  # rate-limit bucket; None = full
    refilled_at: float = 0.0


@dataclass
class Flow:
    user: str | None = None
    stage: str = "username"
    issued_at: float = 0.0


@dataclass
class Counters:
    logins: int = 0
    aura_requests: int = 0
    rate_limited: int = 0
    bad_token: int = 0
    invalid_session: int = 0
    out_of_sync: int = 0
    by_action: dict[str, int] = field(default_factory=dict)
    request_times: list[float] = field(default_factory=list)


class HallmarkTuning(BaseModel):
    """``POST /_sandbox/hallmark``: change the simulator's behaviour at runtime."""

    signon_variant: str | None = Field(default=None, pattern="^(single|two_step)$")
    mfa_input: str | None = Field(default=None, pattern="^(code|verificationCode|otp)$")
    session_ttl_seconds: float | None = Field(default=None, gt=0)
    rate_limit_interval: float | None = Field(default=None, ge=0)
    rate_limit_burst: int | None = Field(default=None, ge=1)
    retry_after: float | None = Field(default=None, ge=0)
    invalidate_after: int | None = Field(default=None, ge=0, description="expire every session after N more Aura calls")
    rotate_fwuid_after: int | None = Field(default=None, ge=0, description="rotate the fwuid after N more Aura calls")
    session_signal: str | None = Field(
        default=None,
        pattern="^(event|event_bare|action_error|guest_exception|javascript|login_page)$",
        description="how an expired session is answered (HTTP 200 in every form; see docs/hallmark.md)",
    )
    out_of_sync_signal: str | None = Field(
        default=None,
        pattern="^(event|exception_message|javascript|warning)$",
        description="how an outdated fwuid is answered (HTTP 200 in every form; see docs/hallmark.md)",
    )
    expire_now: bool = False
    rotate_fwuid_now: bool = False


class HallmarkSimulator(Simulator):
    name = "hallmark"
    description = "Hallmark Connect (Salesforce Experience Cloud) portal"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        self.lock = threading.Lock()
        self.totp_secret = base64.b32encode(hashlib.sha1(f"hallmark-{seed}".encode()).digest()[:20]).decode()
        self.fwuid = self._new_fwuid()
        self.signon_variant = "single"
        self.mfa_input = "code"
        self.session_ttl = 7200.0
        self.rate_limit_interval = 0.02
        self.rate_limit_burst = 2
        self.retry_after = 1.0
        self.invalidate_after: int | None = None
        self.rotate_fwuid_after: int | None = None
        self.session_signal = "event"
        self.out_of_sync_signal = "event"
        self.sessions: dict[str, SimSession] = {}
        self.flows: dict[str, Flow] = {}
        self.frontdoor_keys: dict[str, str] = {}
        self.counters = Counters()
        data = PortalData.build(seed)
        self.stores: list[SimStore] = data.stores
        self.orders: dict[str, SimOrder] = data.orders
        self.billings: dict[str, SimBilling] = data.billings
        self.deliveries: dict[str, dict[str, Any]] = data.deliveries

    # ---------------------------------------------------------------- data

    def _new_fwuid(self) -> str:
        raw = hashlib.sha256(f"{self.seed}-{self.rng.random()}".encode()).digest()[:18]
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    # ---------------------------------------------------------------- queries

    def _customers(self, text: str | None) -> set[str] | None:
        if not text or text.strip().lower() == "all":
            return None
        return {c.strip() for c in text.split(",") if c.strip()}

    def select_orders(self, customers: set[str] | None, start: date | None, end: date | None) -> list[SimOrder]:
        found = [
            o
            for o in self.orders.values()
            if o.created is not None
            and (customers is None or o.store.customer_id in customers)
            and (start is None or o.created >= start)
            and (end is None or o.created <= end)
        ]
        found.sort(key=lambda o: (o.created or DATA_START, o.order_id), reverse=True)
        return found

    def select_billings(
        self, customers: set[str] | None, start: date | None, end: date | None, status: str = "All"
    ) -> list[SimBilling]:
        found = [
            b
            for b in self.billings.values()
            if (customers is None or b.store.customer_id in customers)
            and (start is None or b.billed >= start)
            and (end is None or b.billed <= end)
            and (status in ("", "All") or b.header["billingDocumentStatus"] == status)
        ]
        found.sort(key=lambda b: (b.billed, b.billing_id), reverse=True)
        return found

    def truth(self, params: dict[str, str]) -> dict[str, Any]:
        customers = self._customers(params.get("customer_ids"))
        start, end = parse_day(params.get("start")), parse_day(params.get("end"))
        orders = self.select_orders(customers, start, end)
        return {
            "orders": len(orders),
            "order_lines": sum(len(o.lines) for o in orders),
            "order_total": str(sum((o.total for o in orders), Decimal(0))),
            "billing_documents": len(self.select_billings(customers, start, end)),
        }

    def state(self) -> dict[str, Any]:
        c = self.counters
        return {
            "stores": len(self.stores),
            "orders": len(self.orders),
            "billing_documents": len(self.billings),
            "deliveries": len(self.deliveries),
            "fwuid": self.fwuid,
            "signon_variant": self.signon_variant,
            "sessions": len(self.sessions),
            "logins": c.logins,
            "aura_requests": c.aura_requests,
            "rate_limited": c.rate_limited,
            "bad_token": c.bad_token,
            "invalid_session": c.invalid_session,
            "out_of_sync": c.out_of_sync,
            "by_action": dict(c.by_action),
            "rate_limit_interval": self.rate_limit_interval,
            "session_signal": self.session_signal,
            "out_of_sync_signal": self.out_of_sync_signal,
        }

    def expire_sessions(self) -> None:
        with self.lock:
            self.sessions.clear()

    def rotate_fwuid(self) -> None:
        with self.lock:
            self.fwuid = self._new_fwuid()

    def client_config(self, base_url: str) -> ClientConfig:
        toml = {
            "hallmark": {
                "default_customer_ids": [s.customer_id for s in self.stores],
                "stores": [
                    {"customer_id": s.customer_id, "store_number": s.store_number, "store_name": s.store_name}
                    for s in self.stores
                ],
                "pingone_url": f"{base_url}/pingone/signon",
            }
        }
        env = {
            "BASE_URL": base_url,
            "HALLMARK_USERNAME": USER,
            "HALLMARK_PASSWORD": PASSWORD,
            "MFA_METHOD": "webhook",
            "N8N_WEBHOOK_URL": f"{base_url}/_sandbox/otp?user={quote(USER)}",
            "MFA_TOTP_SECRET": self.totp_secret,
            "MFA_WEBHOOK_TIMEOUT_SECONDS": "30",
            "RATE_LIMIT_DETAIL_SECONDS": "0.05",
            "RATE_LIMIT_SEARCH_SECONDS": "0.1",
            "RATE_LIMIT_JITTER_SECONDS": "0.01",
            "BREAK_AFTER_REQUESTS": "200",
            "BREAK_AFTER_JITTER": "10",
            "BREAK_DURATION_SECONDS": "0.5",
            "BREAK_JITTER_SECONDS": "0.2",
            "REQUEST_TIMEOUT_SECONDS": "10",
            "SEARCH_TIMEOUT_SECONDS": "20",
            "MAX_RETRIES": "3",
            "RETRY_AFTER_CAP_SECONDS": "30",
        }
        return ClientConfig(toml=toml, env=env)

    # ---------------------------------------------------------------- pages

    def install(self, app: FastAPI) -> None:
        sim = self

        @app.post("/_sandbox/hallmark")
        async def tune(change: HallmarkTuning) -> dict[str, Any]:
            with sim.lock:
                for key in (
                    "signon_variant", "mfa_input", "rate_limit_interval", "rate_limit_burst", "retry_after",
                    "session_signal", "out_of_sync_signal",
                ):  # fmt: skip
                    value = getattr(change, key)
                    if value is not None:
                        setattr(sim, key, value)
                if change.rate_limit_interval is not None:
                    for session in sim.sessions.values():
                        session.tokens = None  # a new limit starts with a full bucket
                if change.session_ttl_seconds is not None:
                    sim.session_ttl = change.session_ttl_seconds
                if change.invalidate_after is not None:
                    sim.invalidate_after = change.invalidate_after
                if change.rotate_fwuid_after is not None:
                    sim.rotate_fwuid_after = change.rotate_fwuid_after
            if change.expire_now:
                sim.expire_sessions()
            if change.rotate_fwuid_now:
                sim.rotate_fwuid()
            return sim.state()

        @app.get("/", response_class=HTMLResponse)
        async def landing() -> str:
            return _page(
                "Hallmark Connect",
                "<h1>Hallmark Connect</h1><p>Retailer and partner portal.</p>"
                '<a class="login" aria-label="Retailer Login" href="/pingone/signon?flow=new">Retailer Login</a>',
            )

        @app.get("/s/login", response_class=HTMLResponse)
        async def community_login() -> str:
            return _page(
                "Login",
                "<h1>Please log in</h1>"
                '<a aria-label="Retailer Login" href="/pingone/signon?flow=new">Retailer Login</a>',
            )

        @app.get("/pingone/signon", response_class=HTMLResponse)
        async def signon(request: Request) -> Response:
            flow_id = request.cookies.get("pf_flow")
            flow = sim.flows.get(flow_id or "")
            if flow is None or request.query_params.get("flow") == "new":
                flow_id, flow = secrets.token_hex(8), Flow()
                sim.flows[flow_id] = flow
            response = HTMLResponse(sim._signon_page(flow))
            response.set_cookie("pf_flow", flow_id or "", httponly=True, path="/pingone")
            return response

        @app.post("/pingone/signon")
        async def signon_submit(request: Request) -> Response:
            form = await request.form()
            flow = sim.flows.get(request.cookies.get("pf_flow") or "")
            if flow is None:
                return RedirectResponse("/pingone/signon?flow=new", 303)
            username = str(form.get("username") or flow.user or "").strip()
            password = form.get("password")
            if password is None:
                flow.user, flow.stage = username, "password"
                return RedirectResponse("/pingone/signon", 303)
            if username != USER or str(password) != PASSWORD:
                flow.stage = "username"
                return HTMLResponse(sim._signon_page(flow, "We didn't recognize the username or password."), 200)
            flow.user, flow.stage, flow.issued_at = username, "mfa", time.time()
            sim.otp.issue(username)
            return RedirectResponse("/pingone/mfa", 303)

        @app.get("/pingone/mfa", response_class=HTMLResponse)
        async def mfa(request: Request) -> Response:
            flow = sim.flows.get(request.cookies.get("pf_flow") or "")
            if flow is None or flow.stage != "mfa":
                return RedirectResponse("/pingone/signon?flow=new", 303)
            return HTMLResponse(sim._mfa_page())

        @app.post("/pingone/mfa")
        async def mfa_submit(request: Request) -> Response:
            form = await request.form()
            flow = sim.flows.get(request.cookies.get("pf_flow") or "")
            if flow is None or flow.stage != "mfa" or flow.user is None:
                return RedirectResponse("/pingone/signon?flow=new", 303)
            code = str(form.get(sim.mfa_input) or form.get("code") or "").strip()
            ok = sim.otp.check(flow.user, code) or pyotp.TOTP(sim.totp_secret).verify(code, valid_window=1)
            if not ok:
                return HTMLResponse(sim._mfa_page("Invalid verification code."), 200)
            key = secrets.token_hex(12)
            sim.frontdoor_keys[key] = flow.user
            flow.stage = "done"
            return RedirectResponse(f"/secur/frontdoor.jsp?otp={key}&retURL=%2Fs%2F", 303)

        @app.get("/secur/frontdoor.jsp")
        async def frontdoor(otp: str, retURL: str = "/s/") -> Response:
            user = sim.frontdoor_keys.pop(otp, None)
            if user is None:
                return RedirectResponse("/s/login?ec=302&startURL=%2Fs%2F", 302)
            session = SimSession(
                secrets.token_hex(16), user, secrets.token_urlsafe(24), time.monotonic() + sim.session_ttl
            )
            with sim.lock:
                sim.sessions[session.sid] = session
                sim.counters.logins += 1
            response = RedirectResponse(retURL if retURL.startswith("/") else "/s/", 302)
            response.set_cookie("sid", session.sid, httponly=True, path="/")
            return response

        @app.get("/s/", response_class=HTMLResponse)
        async def community(request: Request) -> Response:
            session = sim._session(request)
            if session is None:
                return RedirectResponse("/s/login?ec=302&startURL=%2Fs%2F", 302)
            return HTMLResponse(sim._community_page(session))

        @app.post("/s/sfsites/aura")
        async def aura(request: Request) -> Response:
            form = await request.form()
            return sim._aura(request, {k: str(v) for k, v in form.items()})

    def _signon_page(self, flow: Flow, error: str = "") -> str:
        err = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        if self.signon_variant == "two_step" and flow.stage != "password":
            body = (
                '<form method="post" action="/pingone/signon"><label>Username'
                '<input name="username" type="text" autocomplete="username"></label>'
                '<button type="submit">Next</button></form>'
            )
        elif self.signon_variant == "two_step":
            body = (
                f'<form method="post" action="/pingone/signon"><p>Signing on as {html.escape(flow.user or "")}</p>'
                '<label>Password<input name="password" type="password" autocomplete="current-password"></label>'
                '<button type="submit">Sign In</button></form>'
            )
        else:
            body = (
                '<form method="post" action="/pingone/signon"><label>Username'
                '<input name="username" type="text"></label>'
                '<label>Password<input name="password" type="password"></label>'
                '<button type="submit">Sign On</button></form>'
            )
        return _page("PingOne Sign On", f"<h1>Sign On</h1>{err}{body}")

    def _mfa_page(self, error: str = "") -> str:
        err = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        return _page(
            "Verify",
            f"<h1>Enter the verification code</h1>{err}"
            '<form method="post" action="/pingone/mfa">'
            f'<input name="{self.mfa_input}" autocomplete="one-time-code" inputmode="numeric">'
            '<button type="submit">Verify</button></form>',
        )

    def _community_page(self, session: SimSession) -> str:
        config = {"context": {"mode": "PROD", "fwuid": self.fwuid, "app": "siteforce:communityApp", "loaded": {}}}
        return _page(
            "Hallmark Connect",
            f"<script>window.Aura = window.Aura || {{}}; window.Aura.initConfig = {json.dumps(config)};</script>"
            "<script>localStorage.setItem("
            f'"$AuraClientService.token$siteforce:communityApp", "{session.token}");</script>'
            f"<h1>Welcome, {html.escape(session.user)}</h1>"
            '<nav><a href="/s/orders">Orders</a> <a href="/s/billingdocuments">Billing Documents</a></nav>',
        )

    def _take_token(self, session: SimSession, now: float) -> bool:
        """Token bucket: one request per ``rate_limit_interval`` on average, bursts of ``rate_limit_burst``.

        A bucket (not a strict gap between two arrivals) so that a client pacing itself at exactly the
        limit is not punished for a few milliseconds of network or scheduler jitter.
        """
        if self.rate_limit_interval <= 0:
            return True
        if session.tokens is None:
            session.tokens, session.refilled_at = float(self.rate_limit_burst), now
        elapsed = now - session.refilled_at
        session.tokens = min(float(self.rate_limit_burst), session.tokens + elapsed / self.rate_limit_interval)
        session.refilled_at = now
        if session.tokens >= 1:
            session.tokens -= 1
            return True
        return False

    def _session(self, request: Request) -> SimSession | None:
        sid = request.cookies.get("sid")
        with self.lock:
            session = self.sessions.get(sid or "")
            if session is not None and time.monotonic() > session.expires_at:
                del self.sessions[session.sid]
                return None
        return session

    # ---------------------------------------------------------------- aura

    def _aura(self, request: Request, form: dict[str, str]) -> Response:
        with self.lock:
            self.counters.aura_requests += 1
            if self.invalidate_after is not None:
                if self.invalidate_after == 0:
                    self.sessions.clear()
                    self.invalidate_after = None
                else:
                    self.invalidate_after -= 1
            if self.rotate_fwuid_after is not None:
                if self.rotate_fwuid_after == 0:
                    self.fwuid = self._new_fwuid()
                    self.rotate_fwuid_after = None
                else:
                    self.rotate_fwuid_after -= 1
        session = self._session(request)
        if session is None:
            self.counters.invalid_session += 1
            return self._session_expired(_action_id(form))
        now = time.monotonic()
        with self.lock:
            too_fast = not self._take_token(session, now)
            if too_fast:
                self.counters.rate_limited += 1
        if too_fast:
            wait = self.retry_after
            header = str(int(wait)) if float(wait).is_integer() else str(wait)
            return Response("Too Many Requests", 429, headers={"Retry-After": header})
        self.counters.request_times.append(now)
        if form.get("aura.token") != session.token:
            self.counters.bad_token += 1
            return Response(b"", 200, media_type="application/json")
        try:
            context = json.loads(form.get("aura.context") or "{}")
            message = json.loads(form.get("message") or "{}")
            action = message["actions"][0]
            params = action["params"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise HTTPException(400, "malformed aura request") from None
        if context.get("fwuid") != self.fwuid:
            self.counters.out_of_sync += 1
            return self._out_of_sync(action.get("id"), str(context.get("fwuid")))
        name = f"{params.get('classname')}.{params.get('method')}"
        self.counters.by_action[name] = self.counters.by_action.get(name, 0) + 1
        counter = self.counters.aura_requests
        try:
            value: Any = self._action(name, params.get("params") or {})
        except LookupError as exc:
            body: dict[str, Any] = {
                "actions": [{"id": action.get("id"), "state": "ERROR", "returnValue": None,
                             "error": [{"message": str(exc.args[0]), "exceptionType": "AuraHandledException"}]}],
                "context": {"fwuid": self.fwuid},
            }  # fmt: skip
            return Response(json.dumps(body), 200, media_type="application/json")
        if counter % 3 == 0:
            value = {"returnValue": value, "cacheable": False}
        body = {
            "actions": [{"id": action.get("id"), "state": "SUCCESS", "returnValue": value, "error": []}],
            "context": {"mode": "PROD", "fwuid": self.fwuid, "app": "siteforce:communityApp"},
            "perfSummary": {"version": "core", "request": [0, 2], "actionsTotal": 1},
        }
        text = json.dumps(body)
        if counter % 4 == 1:
            text = "while(1);\n" + text
        return Response(text, 200, media_type="application/json")

    def _session_expired(self, action_id: str | None) -> Response:
        """An expired session, in the form ``session_signal`` names; every form is an HTTP 200."""
        form = self.session_signal
        if form == "login_page":  # the community bounces the browser to its login page
            page = "<script>window.location.href ='/s/login?ec=302&startURL=%2Fs%2F';</script>"
            return HTMLResponse(_page("Redirecting", page), 200)
        if form == "action_error":  # the session's loss surfaces as the Apex action's error
            body: dict[str, Any] = {
                "actions": [{"id": action_id, "state": "ERROR", "returnValue": None,
                             "error": [{"message": ILLEGAL_SESSION, "exceptionType": "System.UnexpectedException"}]}],
                "context": {"mode": "PROD", "fwuid": self.fwuid, "app": "siteforce:communityApp"},
            }  # fmt: skip
            return Response(json.dumps(body), 200, media_type="application/json")
        if form == "event_bare":
            body = {"exceptionEvent": True, "event": {"descriptor": "aura:invalidSession"}}
            return Response(json.dumps(body), 200, media_type="application/json")
        if form == "guest_exception":  # the request now runs as the site's guest user
            body = {"exceptionEvent": True, "exceptionMessage": "Guest user access is not allowed"}
            return Response(f"*/{json.dumps(body)}/*ERROR*/", 200, media_type="application/json")
        event = {"descriptor": "markup://aura:invalidSession", "attributes": {"values": {"newToken": None}}}
        if form == "javascript":  # Aura's own serialisation: a JavaScript function, so not JSON
            text = f'*/{{"event":{json.dumps(event)},{DEFAULT_HANDLER},"exceptionEvent":true}}/*ERROR*/'
            return Response(CSRF_GUARD + text, 200, media_type="application/json")
        return Response(f"*/{json.dumps({'event': event})}/*ERROR*/", 200, media_type="application/json")

    def _out_of_sync(self, action_id: str | None, sent: str) -> Response:
        """An outdated fwuid, in the form ``out_of_sync_signal`` names; every form is an HTTP 200."""
        form = self.out_of_sync_signal
        message = f"Framework has been updated. Expected: {self.fwuid} Actual: {sent}"
        context = {"mode": "PROD", "fwuid": self.fwuid, "app": "siteforce:communityApp"}
        if form == "warning":  # newer releases: the action comes back as a WARNING, the new fwuid in the context
            body: dict[str, Any] = {
                "actions": [{"id": action_id, "state": "WARNING", "returnValue": None,
                             "error": [{"message": PAGE_CHANGED}]}],
                "context": context,
            }  # fmt: skip
            return Response(json.dumps(body), 200, media_type="application/json")
        event: dict[str, Any] = {"descriptor": "markup://aura:clientOutOfSync"}
        if form == "exception_message":
            body = {"event": event, "exceptionEvent": True, "exceptionMessage": message}
            return Response(f"*/{json.dumps(body)}/*ERROR*/", 200, media_type="application/json")
        if form == "javascript":
            text = (
                f'*/{{"event":{json.dumps(event)},{DEFAULT_HANDLER},'
                f'"exceptionMessage":{json.dumps(message)},"exceptionEvent":true}}/*ERROR*/'
            )
            return Response(CSRF_GUARD + text, 200, media_type="application/json")
        event["attributes"] = {"values": {"message": message}}
        body = {"event": event, "exceptionEvent": True}
        return Response(f"*/{json.dumps(body)}/*ERROR*/", 200, media_type="application/json")

    def _action(self, name: str, params: dict[str, Any]) -> Any:
        if name == "Portal_OrderDetailController.getOrderDetailSAPSearchResult":
            order = self.orders.get(str(params.get("orderId")))
            if order is None:
                raise LookupError(f"No order found for order number {params.get('orderId')}")
            return {"orderHeader": order.header, "orderLines": order.lines}
        if name == "Portal_BillingDocumentDetailController.getBillingDocumentDetailSAPSearchResult":
            bill = self.billings.get(str(params.get("invoiceId")))
            if bill is None:
                raise LookupError(f"No billing document found for {params.get('invoiceId')}")
            details: Any = bill.lines[0] if len(bill.lines) == 1 else bill.lines
            return {"invoiceHeader": bill.header, "invoiceDetails": details}
        if name == "Portal_DeliveryDetailController.getDeliveryDetailSAPSearchResult":
            delivery = self.deliveries.get(str(params.get("deliveryId")))
            if delivery is None:
                raise LookupError(f"No delivery found for {params.get('deliveryId')}")
            return delivery
        if name in (
            "Portal_OrderController.getOrderSAPSearchResult",
            "Portal_BillingDocumentsController.getBillingDocumentsSAPSearchResult",
        ):
            try:
                filters = json.loads(params.get("searchFilters") or "{}")
            except (TypeError, json.JSONDecodeError):
                raise LookupError("searchFilters must be a JSON string") from None
            customers = self._customers(filters.get("customerIds"))
            page_size = int(params.get("pageSize") or 50)
            page = max(1, int(params.get("pageNumber") or 1))
            rows: list[dict[str, Any]]
            if name.startswith("Portal_OrderController"):
                found = self.select_orders(
                    customers,
                    parse_day(filters.get("orderCreationStartDate")),
                    parse_day(filters.get("orderCreationEndDate")),
                )
                rows = [order_row(o) for o in found]
            else:
                bills = self.select_billings(
                    customers,
                    parse_day(filters.get("billingDocumentStartDate")),
                    parse_day(filters.get("billingDocumentEndDate")),
                    filters.get("billingStatus") or "All",
                )
                rows = [billing_row(b) for b in bills]
            chunk = rows[(page - 1) * page_size : page * page_size]
            result: Any = chunk[0] if page_size == 1 and chunk else chunk
            return {"result": result, "totalRecords": len(rows), "pageNumber": page, "pageSize": page_size}
        raise LookupError(f"Unknown Apex action {name}")


def _action_id(form: dict[str, str]) -> str | None:
    try:
        return str(json.loads(form.get("message") or "{}")["actions"][0]["id"])
    except (json.JSONDecodeError, KeyError, IndexError, TypeError):
        return None


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body>{body}</body></html>"
    )
