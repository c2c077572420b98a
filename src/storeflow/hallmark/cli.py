"""`storeflow hallmark ...` (spec 000): extraction, auth-test, import, stores load, runs.

The spec's ``python main.py --order-id X`` is ``storeflow hallmark --order-id X``
(also ``storeflow hallmark extract --order-id X``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from storeflow.context import AppContext, get_context
from storeflow.db.pool import is_connection_lost, lost_database
from storeflow.errors import EXIT_FAILED, ConfigError, NeedsBootstrapError
from storeflow.hallmark import store
from storeflow.logs import get_logger, redact, redacting_console

log = get_logger("main")
console = redacting_console()
err_console = redacting_console(stderr=True)

app = typer.Typer(
    help=(
        "Hallmark Connect order and billing extraction (spec 000).\n\n"
        "Extract with `storeflow hallmark --order-id 3076428648` (the same options work as "
        "`storeflow hallmark extract ...`), then `storeflow hallmark import`. "
        "Selectors are mutually exclusive: --order-id, --orders, --orders-csv, --billing-doc-id, "
        "--billing-docs-csv, --bulk-orders, --bulk-billing-documents (or --resume)."
    ),
    invoke_without_command=True,
    no_args_is_help=False,
)

SELECTORS = ("order_id", "orders", "orders_csv", "billing_doc_id", "billing_docs_csv", "bulk_orders", "bulk_billing")
SEL = "Selection (mutually exclusive)"
BULK = "Bulk search"
CONF = "Configuration"


def _parse_date(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"{flag} {value!r}: expected YYYY-MM-DD") from None


def _with_log_level(ctx: typer.Context, level: str | None) -> AppContext:
    """The command's context; ``--log-level`` here sets the level the settings load with (as the root's does).

    Settings load lazily on first use, after this callback, so nothing is changed after loading.
    """
    app_ctx = get_context(ctx)
    if level:
        if level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigError(f"--log-level {level!r}: use DEBUG, INFO, WARNING or ERROR")
        app_ctx.log_level = level.upper()
    return app_ctx


def extract(
    ctx: typer.Context,
    order_id: Annotated[str | None, typer.Option("--order-id", help="Single order id.", rich_help_panel=SEL)] = None,
    orders: Annotated[
        Path | None, typer.Option("--orders", help="Text file of order ids, one a line.", rich_help_panel=SEL)
    ] = None,
    orders_csv: Annotated[
        Path | None,
        typer.Option(
            "--orders-csv", help="Portal order search CSV export (its 'Order #' column).", rich_help_panel=SEL
        ),
    ] = None,
    billing_doc_id: Annotated[
        str | None, typer.Option("--billing-doc-id", help="Single billing document id.", rich_help_panel=SEL)
    ] = None,
    billing_docs_csv: Annotated[
        Path | None,
        typer.Option(
            "--billing-docs-csv",
            help="Portal billing document CSV export (its 'Billing Document #' column).",
            rich_help_panel=SEL,
        ),
    ] = None,
    bulk_orders: Annotated[
        bool,
        typer.Option("--bulk-orders", help="Search orders by date range, then download each.", rich_help_panel=SEL),
    ] = False,
    bulk_billing: Annotated[
        bool,
        typer.Option(
            "--bulk-billing-documents",
            help="Search billing documents by date range, then download each.",
            rich_help_panel=SEL,
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the latest run that was stopped (rate limit, Ctrl-C, crash) or failed; "
            "with a bulk selector, the latest run of that kind.",
            rich_help_panel=SEL,
        ),
    ] = False,
    start_date: Annotated[str | None, typer.Option("--start-date", help="YYYY-MM-DD.", rich_help_panel=BULK)] = None,
    end_date: Annotated[str | None, typer.Option("--end-date", help="YYYY-MM-DD.", rich_help_panel=BULK)] = None,
    customer_ids: Annotated[
        str | None,
        typer.Option(
            "--customer-ids",
            help="Comma-separated customer ids (default: \\[hallmark] default_customer_ids of the TOML file).",
            rich_help_panel=BULK,
        ),
    ] = None,
    search_only: Annotated[
        bool, typer.Option("--search-only", help="Only search and summarise; download nothing.", rich_help_panel=BULK)
    ] = False,
    billing_status: Annotated[
        str, typer.Option("--billing-status", help="Billing status filter of the billing search.", rich_help_panel=BULK)
    ] = "All",
    with_deliveries: Annotated[
        bool,
        typer.Option("--with-deliveries", help="Also fetch each order's delivery details.", rich_help_panel=BULK),
    ] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", help="Output directory (overrides OUTPUT_DIRECTORY).", rich_help_panel=CONF),
    ] = None,
    headless: Annotated[
        bool | None,
        typer.Option(
            "--headless/--no-headless", help="Browser mode for login (default HEADLESS_MODE).", rich_help_panel=CONF
        ),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.", rich_help_panel=CONF)
    ] = None,
    update: Annotated[
        bool, typer.Option("--update", help="Re-download records that already have a file.", rich_help_panel=CONF)
    ] = False,
    max_consecutive_failures: Annotated[
        int,
        typer.Option(
            "--max-consecutive-failures",
            min=1,
            help="Stop (resumable) after N failures in a row.",
            rich_help_panel=CONF,
        ),
    ] = 3,
) -> None:
    """Download orders or billing documents as JSON files (the spec's main.py)."""
    if ctx.invoked_subcommand is not None:
        return
    given = {
        "order_id": order_id,
        "orders": orders,
        "orders_csv": orders_csv,
        "billing_doc_id": billing_doc_id,
        "billing_docs_csv": billing_docs_csv,
        "bulk_orders": bulk_orders,
        "bulk_billing": bulk_billing,
    }
    chosen = [name for name in SELECTORS if given[name] not in (None, False)]
    if not chosen and not resume:
        console.print(ctx.get_help())
        raise typer.Exit(0)
    if len(chosen) > 1:
        flags = ", ".join("--" + c.replace("_", "-").replace("bulk-billing", "bulk-billing-documents") for c in chosen)
        raise ConfigError(f"choose one selector, not several: {flags}")
    app_ctx = _with_log_level(ctx, log_level)
    from storeflow.hallmark.extract import ExtractRequest
    from storeflow.hallmark.inputs import BILLING_COLUMN, ORDER_COLUMN, read_csv_column, read_id_list

    request = ExtractRequest(
        kind=None,
        start=_parse_date(start_date, "--start-date"),
        end=_parse_date(end_date, "--end-date"),
        customer_ids=[c.strip() for c in (customer_ids or "").split(",") if c.strip()],
        billing_status=billing_status,
        search_only=search_only,
        with_deliveries=with_deliveries,
        update=update,
        max_consecutive_failures=max_consecutive_failures,
        resume=resume,
    )
    if order_id:
        request.kind, request.ids, request.source = "orders", [order_id.strip()], "--order-id"
    elif orders:
        request.kind, request.ids, request.source = "orders", read_id_list(orders), str(orders)
    elif orders_csv:
        request.kind, request.ids, request.source = "orders", read_csv_column(orders_csv, ORDER_COLUMN), str(orders_csv)
    elif billing_doc_id:
        request.kind, request.ids, request.source = "billing", [billing_doc_id.strip()], "--billing-doc-id"
    elif billing_docs_csv:
        request.kind, request.source = "billing", str(billing_docs_csv)
        request.ids = read_csv_column(billing_docs_csv, BILLING_COLUMN)
    elif bulk_orders or bulk_billing:
        request.kind = "bulk-orders" if bulk_orders else "bulk-billing-documents"
        if not resume:
            if request.start is None or request.end is None:
                raise ConfigError("--bulk-orders/--bulk-billing-documents need --start-date and --end-date")
            if request.start > request.end:
                raise ConfigError(f"--start-date {request.start} is after --end-date {request.end}")
    if request.kind in ("orders", "billing") and not request.ids and not resume:
        raise ConfigError(f"no ids found in {request.source}")
    if search_only and request.kind not in (None, "bulk-orders", "bulk-billing-documents"):
        raise ConfigError("--search-only goes with --bulk-orders or --bulk-billing-documents")
    code = run_extraction(app_ctx, request, output, headless)
    raise typer.Exit(code)


app.callback()(extract)
app.command("extract")(extract)


@contextmanager
def database_errors(doing: str) -> Iterator[None]:
    """A database lost mid-command ends it with exit 4 and one clear line, never a traceback."""
    try:
        yield
    except Exception as exc:
        if is_connection_lost(exc):
            raise lost_database(exc, doing) from exc
        raise


def run_extraction(app_ctx: AppContext, request: Any, output: Path | None, headless: bool | None) -> int:
    from storeflow.hallmark.auth import Authenticator, console_prompt
    from storeflow.hallmark.extract import Extractor

    settings = app_ctx.settings
    db = app_ctx.database()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task("searching" if phase == "search" else "downloading", total=total)
            bar.update(tasks[phase], completed=done, total=total)

        def prompt(text: str) -> str:
            bar.stop()  # a manual MFA prompt must not fight with the live progress display
            try:
                return console_prompt(text)
            finally:
                bar.start()

        auth = Authenticator(settings, headless=settings.HEADLESS_MODE if headless is None else headless, prompt=prompt)
        extractor = Extractor(settings, db, auth, output=output, progress=progress)
        try:
            with database_errors("extracting (progress so far is saved: continue with `storeflow hallmark --resume`)"):
                summary = asyncio.run(extractor.run(request))
        except KeyboardInterrupt:
            err_console.print("stopped: progress is saved; continue with `storeflow hallmark --resume`")
            raise
        finally:
            app_ctx.close()
    _print_summary(summary, request.search_only)
    return 0 if summary.status == store.RUN_OK else EXIT_FAILED


def _print_summary(summary: Any, search_only: bool) -> None:
    table = Table(title=f"hallmark {summary.kind}: {summary.status}", show_header=False)
    table.add_row("run", str(summary.run_id) + (" (resumed)" if summary.resumed else ""))
    table.add_row("records found", str(summary.found))
    if search_only:
        for customer, count in sorted(summary.by_customer.items()):
            table.add_row(f"  customer {customer}", str(count))
    else:
        table.add_row("downloaded", str(summary.downloaded))
        table.add_row("skipped (already on disk)", str(summary.skipped))
        table.add_row("failed", str(summary.failed))
    table.add_row("session", "reused saved session" if summary.reused_session else f"{summary.logins} login(s)")
    table.add_row("429 answers", str(summary.rate_limited))
    table.add_row("time", f"{summary.elapsed:.1f}s")
    console.print(table)
    for record_id, error in summary.failures[:10]:
        err_console.print(f"  failed {record_id}: {redact(str(error))}", highlight=False, markup=False)


@app.command("auth-test")
def auth_test(
    ctx: typer.Context,
    reuse: Annotated[
        bool, typer.Option("--reuse", help="Only check the saved session (no browser); exit 3 if it is invalid.")
    ] = False,
    headless: Annotated[bool | None, typer.Option("--headless/--no-headless", help="Browser mode.")] = None,
) -> None:
    """Log in (landing page, sign-on, MFA) and save the session, or check the saved one (test_auth.py)."""
    from storeflow.hallmark.auth import Authenticator

    app_ctx = get_context(ctx)
    settings = app_ctx.settings
    auth = Authenticator(settings, headless=settings.HEADLESS_MODE if headless is None else headless)
    session = asyncio.run(auth.saved_session() if reuse else auth.login())
    _record_session_check(app_ctx, session is not None)
    if session is None:
        raise NeedsBootstrapError(
            f"the saved session {settings.SESSION_FILE} is missing or expired; run `storeflow hallmark auth-test`"
        )
    console.print(f"[green]ok[/] session for {settings.HALLMARK_USERNAME} at {session.base_url}")
    console.print(f"  token: {len(session.token)} characters (from localStorage)")
    console.print(f"  fwuid: {session.fwuid or '(not found on /s/)'}")
    console.print(f"  saved: {settings.SESSION_FILE}" + (" (reused)" if session.from_saved_state else ""))


def _record_session_check(app_ctx: AppContext, valid: bool) -> None:
    try:
        db = app_ctx.database()
    except Exception as exc:  # the check itself is the point; the audit row is a bonus
        log.warning("could not record the session check: %s", exc, event="session")
        return
    try:
        with db.transaction() as conn:
            store.record_session_check(conn, str(app_ctx.settings.SESSION_FILE), valid)
    except Exception as exc:
        if not is_connection_lost(exc):
            raise
        log.warning("could not record the session check: %s", lost_database(exc, "recording it"), event="session")


@app.command("import")
def import_cmd(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Folder of order_*.json / billing_*.json (default OUTPUT_DIRECTORY)."),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=8, help="Parallel database connections.")] = 2,
) -> None:
    """Import the JSON tree into PostgreSQL (the spec's import_to_postgres.py)."""
    from storeflow.hallmark.importer import import_directory

    app_ctx = get_context(ctx)
    folder = data_dir or app_ctx.settings.OUTPUT_DIRECTORY
    if not folder.is_dir():
        raise ConfigError(f"data directory not found: {folder}")
    fallback = {s.customer_id: (s.store_number, s.store_name) for s in app_ctx.settings.config.hallmark.stores}
    try:
        with database_errors(f"importing {folder} (a re-run imports the rest; files are upserted)"):
            summary = import_directory(app_ctx.database(), folder, workers=workers, fallback_stores=fallback)
    finally:
        app_ctx.close()
    console.print(
        f"imported {summary.files} file(s): {summary.orders} orders ({summary.order_lines} lines), "
        f"{summary.billing_documents} billing documents ({summary.billing_lines} lines); "
        f"{len(summary.failed)} failed"
    )
    for path, error in summary.failed:
        err_console.print(f"  skipped {path}: {redact(str(error))}", highlight=False, markup=False)
    if summary.failed:
        raise typer.Exit(EXIT_FAILED)


stores_app = typer.Typer(
    help="The canonical store mapping (customer id -> store number and name).", no_args_is_help=True
)
app.add_typer(stores_app, name="stores")


@stores_app.command("load")
def stores_load(
    ctx: typer.Context,
    file: Annotated[
        Path | None,
        typer.Argument(help="CSV (customer_id,store_number,store_name) or a storeflow TOML file; default: the config."),
    ] = None,
) -> None:
    """Create/update the `stores` table (the spec's create_stores_table.py)."""
    from storeflow.hallmark.stores import read_stores_file

    app_ctx = get_context(ctx)
    if file is not None:
        stores = read_stores_file(file)
        source = str(file)
    else:
        stores = list(app_ctx.settings.config.hallmark.stores)
        source = str(app_ctx.settings.config_path or "the configuration")
        if not stores:
            raise ConfigError("no stores: pass a CSV/TOML file or set [[hallmark.stores]] in the storeflow TOML file")
    with database_errors("loading the stores"), app_ctx.database().transaction() as conn:
        changed = store.upsert_stores(conn, stores)
    console.print(f"{len(stores)} store(s) from {source}; {changed} inserted or changed")


@app.command("runs")
def runs_cmd(
    ctx: typer.Context, limit: Annotated[int, typer.Option("--limit", help="How many runs to list.")] = 10
) -> None:
    """List recent extraction runs (what `--resume` would continue)."""
    with database_errors("listing the runs"), get_context(ctx).database().transaction() as conn:
        runs = store.recent_runs(conn, limit)
    table = Table("run", "kind", "status", "started", "downloaded", "skipped", "failed", "last error")
    for r in runs:
        table.add_row(
            str(r.run_id)[:8], r.kind, r.status, f"{r.started_at:%Y-%m-%d %H:%M}",
            str(r.downloaded), str(r.skipped), str(r.failed), (r.last_error or "")[:60],
        )  # fmt: skip
    console.print(table)
