"""The operator dashboard under /dashboard and /metrics: server-rendered pages, every figure from the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from storeflow import __version__
from storeflow.dashboard import auth, charts, queries
from storeflow.dashboard.status import PIPELINES, format_age, worst
from storeflow.esl.reconcile_run import shop_overview
from storeflow.jobs import names as job_names
from storeflow.jobs import queries as job_queries
from storeflow.logs import get_logger
from storeflow.web.access import LoginThrottle, WebAccess

if TYPE_CHECKING:
    import psycopg

    from storeflow.settings import Settings

log = get_logger("web")
FAILED_ON_OVERVIEW = 10  # failed jobs listed under "What needs you" (the Jobs page lists them all)
router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

STATIC_TYPES = {".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".js": "text/javascript; charset=utf-8"}
# Pages hold operational data: never cached, never framed, and nothing loaded from elsewhere (works offline).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}
NAV = (
    ("overview", "/dashboard", "Overview"),
    ("crm", "/dashboard/crm", "CRM"),
    ("hallmark", "/dashboard/hallmark", "Hallmark"),
    ("esl", "/dashboard/esl", "ESL"),
    ("jobs", "/dashboard/jobs", "Jobs"),
    ("sessions", "/dashboard/sessions", "Sessions"),
    ("charts", "/dashboard/charts", "Charts"),
)


# ---------------------------------------------------------------- template helpers


def _dt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    return str(value)


def _ago(value: Any) -> str:
    if not isinstance(value, datetime):
        return "—"
    return format_age((datetime.now(UTC) - value).total_seconds()) + " ago"


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, (Decimal, float)):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _bytes(value: Any) -> str:
    if value is None:
        return "—"
    n = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(value)


def _code(text: str) -> Markup:
    """Render `backticked` commands in an action text as <code>."""
    out = []
    for i, part in enumerate(str(text or "").split("`")):
        escaped = Markup.escape(part)
        out.append(Markup(f"<code>{escaped}</code>") if i % 2 else escaped)
    return Markup("").join(out)


templates.env.filters.update(dt=_dt, ago=_ago, num=_num, bytes=_bytes, code=_code, age=format_age)


def _render(request: Request, name: str, page: str, **context: Any) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    user = getattr(request.state, "dashboard_user", None)
    context.update(
        request=request,
        nav=NAV,
        page=page,
        user=user,
        show_logout=not _access(request).open_to(request.headers),
        csrf=auth.csrf_token(settings, request.cookies.get(auth.COOKIE)),
        now=datetime.now(UTC),
        version=__version__,
    )
    response = templates.TemplateResponse(request, name, context)
    response.headers.update(PAGE_HEADERS)
    return response


@contextmanager
def _conn(request: Request) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection; an unreachable database is a 503 with the reason, not a traceback."""
    import psycopg
    from psycopg_pool import PoolTimeout

    try:
        with request.app.state.db.pool.connection() as conn:
            yield conn
    except (PoolTimeout, psycopg.OperationalError) as exc:
        log.error("dashboard: database unavailable: %s", exc, event="db")
        raise HTTPException(503, f"database unavailable: {type(exc).__name__}") from exc


# ---------------------------------------------------------------- access


def _access(request: Request) -> WebAccess:
    return request.app.state.web_access  # type: ignore[no-any-return]


def _throttle(request: Request) -> LoginThrottle:
    return request.app.state.login_throttle  # type: ignore[no-any-return]


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") and request.method == "GET"


def _locked(request: Request) -> HTTPException:
    minutes = _lock_minutes(request)
    if _wants_html(request):
        return HTTPException(303, headers={"Location": "/dashboard/login?locked=1"})
    detail = f"too many failed credentials from this address: wait {minutes} minutes"
    return HTTPException(429, detail, headers={"Retry-After": str(int(_throttle(request).window))})


def _lock_minutes(request: Request) -> int:
    return max(1, round(_throttle(request).window / 60))


def authenticate(request: Request) -> str | None:
    """The caller from the session cookie, HTTP Basic or the admin bearer token, else None.

    Every failed Basic or bearer credential counts against the app's one limiter (the login form's too);
    a locked-out address is refused (429, or the login page's lockout message) even with right credentials.
    """
    settings: Settings = request.app.state.settings
    user = auth.read_cookie(settings, request.cookies.get(auth.COOKIE))
    if user:
        return user
    header = request.headers.get("authorization")
    if not header:
        return None
    client, throttle = _client(request), _throttle(request)
    if throttle.blocked(client):
        log.warning("credentials refused for %s: too many failures", client, event="login")
        raise _locked(request)
    user = auth.read_basic(settings, header) or ("token" if auth.read_bearer(settings, header) else None)
    if user is None:
        throttle.failed(client)
        log.warning("wrong %s credentials from %s", header.split(" ", 1)[0], client, event="login")
        return None
    throttle.succeeded(client)
    return user


def require_user(request: Request) -> str:
    """The logged-in user, or a redirect to the login page (401 for non-HTML clients)."""
    if _access(request).open_to(request.headers):
        request.state.dashboard_user = None
        return "local"
    user = authenticate(request)
    if user:
        request.state.dashboard_user = user
        return user
    if _wants_html(request):
        target = quote(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        raise HTTPException(303, headers={"Location": f"/dashboard/login?next={target}"})
    raise HTTPException(401, "login required", headers={"WWW-Authenticate": 'Basic realm="storeflow"'})


User = Annotated[str, Depends(require_user)]


def _safe_next(target: str | None) -> str:
    if not target or not target.startswith("/dashboard") or urlsplit(target).netloc:
        return "/dashboard"
    return target


@router.get("/dashboard/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None, failed: int = 0, locked: int = 0) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    configured = bool(settings.DASHBOARD_PASSWORD and settings.DASHBOARD_PASSWORD.get_secret_value())
    return _render(
        request, "login.html", "login", target=_safe_next(next), failed=bool(failed), configured=configured,
        locked=bool(locked), minutes=_lock_minutes(request),
    )  # fmt: skip


@router.post("/dashboard/login")
def login_submit(
    request: Request,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/dashboard",
    csrf: Annotated[str, Form()] = "",
) -> RedirectResponse:
    settings: Settings = request.app.state.settings
    target = _safe_next(next)
    client, throttle = _client(request), _throttle(request)
    if not auth.check_csrf(settings, request.cookies.get(auth.COOKIE), csrf):
        raise HTTPException(403, "stale form: reload the page and try again")
    if throttle.blocked(client):
        log.warning("dashboard login refused for %s: too many failures", client, event="login")
        return RedirectResponse(f"/dashboard/login?locked=1&next={quote(target)}", status_code=303)
    if not auth.check_credentials(settings, username, password):
        throttle.failed(client)
        log.warning("dashboard login failed for %r from %s", username, client, event="login")
        return RedirectResponse(f"/dashboard/login?failed=1&next={quote(target)}", status_code=303)
    throttle.succeeded(client)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        auth.COOKIE,
        auth.issue_cookie(settings, username),
        max_age=auth.MAX_AGE_SECONDS,
        httponly=True,
        samesite="strict",
        # the scheme is https when the client used it directly, or a FORWARDED_ALLOW_IPS proxy said so
        secure=request.url.scheme == "https",
        path="/",
    )
    log.info("dashboard login by %s from %s", username, _client(request), event="login")
    return response


@router.post("/dashboard/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> RedirectResponse:
    settings: Settings = request.app.state.settings
    if not auth.check_csrf(settings, request.cookies.get(auth.COOKIE), csrf):
        raise HTTPException(403, "stale form: reload the page and try again")
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path="/", secure=request.url.scheme == "https", httponly=True)
    return response


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


@router.get("/dashboard/static/{name}")
def static_file(name: str) -> Response:
    """The dashboard's CSS and icons (public: no data in them), served from the package."""
    suffix = Path(name).suffix
    if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
        raise HTTPException(404)
    entry = resources.files("storeflow.dashboard").joinpath("static", name)
    if not entry.is_file():
        raise HTTPException(404)
    return Response(
        entry.read_bytes(), media_type=STATIC_TYPES[suffix], headers={"Cache-Control": "public, max-age=3600"}
    )


# ---------------------------------------------------------------- pages


@router.get("/dashboard", response_class=HTMLResponse)
@router.get("/dashboard/", response_class=HTMLResponse, include_in_schema=False)
def overview(request: Request, user: User) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    now = datetime.now(UTC)
    with _conn(request) as conn:
        cells = queries.overview_cells(conn, settings, now)
        alerts = queries.recent_alerts(conn)
        has_jobs = job_queries.has_schema(conn)
        failed_jobs = job_queries.failed_jobs(conn, limit=FAILED_ON_OVERVIEW) if has_jobs else []
        failed_total = job_queries.failed_count(conn) if has_jobs else 0
    stores: dict[str, str] = {}
    grid: dict[tuple[str, str], Any] = {}
    for cell in cells:
        stores.setdefault(cell.store_key, cell.store_label)
        grid[(cell.store_key, cell.pipeline)] = cell
    unused = [label for p, label in PIPELINES.items() if not any(p == c.pipeline for c in cells)]
    todo = [c for c in worst(cells) if c.needs_operator]
    counts: dict[str, int] = {}
    for cell in cells:
        counts[cell.status] = counts.get(cell.status, 0) + 1
    return _render(
        request, "overview.html", "overview",
        stores=stores, grid=grid, pipelines=list(PIPELINES.items()), unused=unused, todo=todo, counts=counts,
        alerts=alerts, stale_after_hours=settings.config.dashboard.stale_after_hours,
        failed_jobs=failed_jobs, failed_total=failed_total,
    )  # fmt: skip


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


@router.get("/dashboard/crm", response_class=HTMLResponse)
def crm(
    request: Request,
    user: User,
    store: str = "",
    status: str = "",
) -> HTMLResponse:
    """Filters: ?store=td_a668&status=failed&from=YYYY-MM-DD&to=YYYY-MM-DD."""
    params = request.query_params
    filters = queries.CrmFilters(
        store=store, status=status, date_from=_date(params.get("from")), date_to=_date(params.get("to"))
    )
    with _conn(request) as conn:
        data = queries.crm_page(conn, request.app.state.settings, filters)
    return _render(request, "crm.html", "crm", data=data, filters=filters)


@router.get("/dashboard/hallmark", response_class=HTMLResponse)
def hallmark(request: Request, user: User) -> HTMLResponse:
    with _conn(request) as conn:
        data = queries.hallmark_page(conn)
    return _render(request, "hallmark.html", "hallmark", data=data)


@router.get("/dashboard/esl", response_class=HTMLResponse)
def esl(request: Request, user: User, retried: int | None = None) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    with _conn(request) as conn:
        data = queries.esl_page(conn)
        shops = shop_overview(conn)
    bars = data.latency.bars() if data.latency and data.latency.count else []
    chart = charts.bar_chart(bars, title="webhook to label latency")
    return _render(
        request, "esl.html", "esl", data=data, shops=shops, latency_chart=Markup(chart), retried=retried,
        queue_age_alert=settings.config.dashboard.queue_age_alert_seconds,
    )  # fmt: skip


@router.post("/dashboard/esl/retry")
def esl_retry(
    request: Request,
    user: User,
    csrf: Annotated[str, Form()] = "",
    item_id: Annotated[int | None, Form()] = None,
) -> RedirectResponse:
    settings: Settings = request.app.state.settings
    if not auth.check_csrf(settings, request.cookies.get(auth.COOKIE), csrf):
        raise HTTPException(403, "stale form: reload the page and try again")
    with _conn(request) as conn, conn.transaction():
        count = queries.retry_dead(conn, [item_id] if item_id is not None else None)
    log.info("dashboard retry of %s dead letter(s) by %s", count, user, event="esl_retry")
    return RedirectResponse(f"/dashboard/esl?retried={count}", status_code=303)


def _defined_schedules(settings: Settings) -> list[tuple[str, str]]:
    """(periodic id, cron) of every schedule in the TOML file's [[schedule]] tables."""
    from storeflow.jobs.schedules import periodic_defs

    return [(d.periodic_id, d.cron) for d in periodic_defs(settings.config.schedule)]


@router.get("/dashboard/jobs", response_class=HTMLResponse)
def jobs(request: Request, user: User, retried: int | None = None, error: str = "") -> HTMLResponse:
    settings: Settings = request.app.state.settings
    defined = _defined_schedules(settings)
    with _conn(request) as conn:
        present = job_queries.has_schema(conn)
        schedules = job_queries.schedules(conn, defined) if present else []
        running = job_queries.running_jobs(conn) if present else []
        failed = job_queries.failed_jobs(conn) if present else []
        counts = job_queries.job_counts(conn) if present else {}
    return _render(
        request, "jobs.html", "jobs", present=present, schedules=schedules, running=running, failed=failed,
        counts=counts, queues=sorted({q for q, _ in counts}), statuses=job_names.STATUSES, retried=retried,
        error=error[:200],
    )  # fmt: skip


@router.post("/dashboard/jobs/retry")
def jobs_retry(
    request: Request, user: User, csrf: Annotated[str, Form()] = "", job_id: Annotated[int, Form()] = 0
) -> RedirectResponse:
    """Retry one failed job now (procrastinate's retry: back to todo, attempts + 1)."""
    settings: Settings = request.app.state.settings
    if not auth.check_csrf(settings, request.cookies.get(auth.COOKIE), csrf):
        raise HTTPException(403, "stale form: reload the page and try again")
    try:
        with _conn(request) as conn, conn.transaction():
            job_queries.retry_job(conn, job_id)
    except job_queries.JobNotRetryable as exc:
        log.warning("dashboard retry of job %s by %s refused: %s", job_id, user, exc, event="jobs_retry")
        return RedirectResponse(f"/dashboard/jobs?error={quote(str(exc))}", status_code=303)
    log.info("dashboard retry of job %s by %s", job_id, user, event="jobs_retry")
    return RedirectResponse(f"/dashboard/jobs?retried={job_id}", status_code=303)


@router.get("/dashboard/sessions", response_class=HTMLResponse)
def sessions(request: Request, user: User) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    with _conn(request) as conn:
        rows = queries.sessions(conn, settings)
    return _render(request, "sessions.html", "sessions", rows=rows)


@router.get("/dashboard/charts", response_class=HTMLResponse)
def charts_page(request: Request, user: User) -> HTMLResponse:
    now = datetime.now(UTC)
    with _conn(request) as conn:
        sales = queries.daily_sales(conn)
        throughput = queries.esl_throughput(conn, now)
        latency = queries.latency_histogram(conn, now - timedelta(days=7))
    totals = {store: sum(v for _, v in pts) for store, pts in sales.items()}
    return _render(
        request, "charts.html", "charts",
        sales_chart=Markup(charts.line_chart(sales, title="daily net sales per store")), totals=totals,
        throughput_chart=Markup(charts.bar_chart([(h.strftime("%H:00"), n) for h, n in throughput],
                                                  title="labels synced per hour")),
        latency_chart=Markup(charts.bar_chart(latency.bars() if latency.count else [], title="sync latency")),
        throughput_total=sum(n for _, n in throughput), latency_count=latency.count,
    )  # fmt: skip


# ---------------------------------------------------------------- metrics


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """Prometheus exposition, read from the database at scrape time."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from storeflow.dashboard.metrics import DatabaseCollector

    settings: Settings = request.app.state.settings
    if not _access(request).open_to(request.headers) and authenticate(request) is None:
        raise HTTPException(401, "login required", headers={"WWW-Authenticate": 'Basic realm="storeflow"'})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(request.app.state.db, settings))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


# ---------------------------------------------------------------- API docs


def _docs_on(request: Request) -> None:
    if not _access(request).docs:
        raise HTTPException(404, "API docs are turned off (STOREFLOW_API_DOCS=false)")


DocsOn = Depends(_docs_on)


@router.get("/openapi.json", dependencies=[DocsOn])
def openapi_document(request: Request, user: User) -> JSONResponse:
    """The OpenAPI document, for the same callers as the dashboard."""
    return JSONResponse(request.app.openapi(), headers={"Cache-Control": "no-store"})


@router.get("/docs", response_class=HTMLResponse, dependencies=[DocsOn])
def api_docs(request: Request, user: User) -> HTMLResponse:
    """The API reference rendered here from the OpenAPI document: no script, nothing from a CDN."""
    spec = request.app.openapi()
    operations = [
        {"method": method.upper(), "path": path, **op}
        for path, methods in spec.get("paths", {}).items()
        for method, op in methods.items()
    ]
    return _render(request, "docs.html", "docs", spec=spec, operations=operations)
