"""`storeflow crm ...` / `crm_download ...`: the CRM report pipeline (docs/crm.md).

Exit codes (stable, for cron alerting): 0 every store fine; 1 some store failed;
2 configuration error; 3 a store's session needs `crm_download bootstrap`;
6 a store was skipped because another run holds its lock (already running).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from storeflow.context import get_context
from storeflow.errors import EXIT_FAILED
from storeflow.logs import redact, redacting_console

app = typer.Typer(
    help=(
        "TumbleDry + UClean report downloads and ingestion (docs/crm.md).\n\n"
        "First `bootstrap` each store (login + OTP, saves profiles/<crm>_<store>.json), then run "
        "`download` from cron. Exit codes: 0 ok, 1 some stores failed, 2 configuration error, "
        "3 a session needs bootstrap, 6 a store skipped (already running, lock held)."
    ),
    no_args_is_help=True,
)
console = redacting_console()

CrmOpt = Annotated[str, typer.Option("--crm", help="td (TumbleDry), uc (UClean) or all.")]
StoreOpt = Annotated[str, typer.Option("--store", help="Store code from the TOML file (a668, sector56 ...) or all.")]


@app.command()
def bootstrap(
    ctx: typer.Context,
    crm: CrmOpt = "all",
    store: StoreOpt = "all",
    otp: Annotated[
        str | None,
        typer.Option("--otp", help="The one-time code, when you already have it (else webhook, else stdin)."),
    ] = None,
    headless: Annotated[
        bool | None,
        typer.Option("--headless/--headed", help="Browser mode (default: headed when a display exists)."),
    ] = None,
) -> None:
    """Log a store in (OTP from --otp, the store's otp_webhook_url, or stdin) and save its session.

    Example: `crm_download bootstrap --crm td --store a668`
    """
    from storeflow.crm.runner import check_stores, run_bootstrap, select_stores

    app_ctx = get_context(ctx)
    settings = app_ctx.settings
    stores = select_stores(settings, crm, store)
    check_stores(settings, stores)
    db = app_ctx.database()
    outcomes = asyncio.run(run_bootstrap(settings, stores, otp, headless, True, db))
    for o in outcomes:
        if o.status == "ok":
            console.print(f"[green]ok[/] {o.key}: session saved to {o.file}", highlight=False)
        else:
            console.print(f"[red]failed[/] {o.key}: {escape(redact(o.error or ''))}", highlight=False)
    if any(o.status != "ok" for o in outcomes):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def download(
    ctx: typer.Context,
    crm: CrmOpt = "all",
    store: StoreOpt = "all",
    start: Annotated[
        str | None,
        typer.Option("--from", help="First day: YYYY-MM-DD, today or yesterday (default: after the last success)."),
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day: YYYY-MM-DD, today or yesterday.")] = None,
    headless: Annotated[
        bool | None, typer.Option("--headless/--headed", help="Override HEADLESS_MODE for this run.")
    ] = None,
    keep_files: Annotated[bool, typer.Option("--keep-files", help="Keep downloaded files after ingestion.")] = False,
) -> None:
    """Download each store's report and ingest it into PostgreSQL.

    Examples: `crm_download download --crm td --store a817 --from 2025-11-12 --to 2025-11-12`;
    `crm_download download --crm uc --store all --from today --to today`;
    `crm_download download --crm all --store all` (window = since the last success, with overlap).
    """
    from storeflow.crm.progress import make_progress
    from storeflow.crm.runner import DownloadOptions, check_stores, run_download, select_stores

    app_ctx = get_context(ctx)
    settings = app_ctx.settings
    stores = select_stores(settings, crm, store)
    check_stores(settings, stores)
    from storeflow.crm.windows import requested_window

    requested_window(start, end, datetime.now().date())  # a bad date fails before anything starts
    db = app_ctx.database()
    options = DownloadOptions(start=start, end=end, headless=headless, keep_files=keep_files)
    with make_progress([s.key for s in stores], console) as progress:
        summary = asyncio.run(run_download(settings, db, stores, options, progress))
    table = Table(
        "store", "status", "window", "inserted", "updated", "rejected", "file / error", title=f"run {summary.run_id}"
    )
    for o in summary.outcomes:
        table.add_row(
            o.key,
            o.status,
            str(o.window or "-"),
            str(o.inserted),
            str(o.updated),
            str(o.rejected),
            (o.error or o.file or "")[:120],
        )
    console.print(table)
    for o in summary.outcomes:
        if o.status == "needs_bootstrap":
            console.print(f"{o.key} needs bootstrap: crm_download bootstrap --crm {o.key[:2]} --store {o.key[3:]}")
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per store instead of a table.")
    ] = False,
) -> None:
    """Per store: last successful window, last failure and why, session age."""
    from storeflow.crm.status import COLUMNS, store_status

    app_ctx = get_context(ctx)
    settings = app_ctx.settings
    rows = store_status(settings, app_ctx.database())
    if as_json:
        for r in rows:
            typer.echo(json.dumps(dict(zip(COLUMNS, r, strict=True))))
        return
    table = Table("store", "last success", "ingested at", "last failure", "why", "session age", title="crm status")
    for r in rows:
        table.add_row(*r)
    console.print(table)
