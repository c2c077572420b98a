"""The `storeflow` command (and `crm_download`, which is `storeflow crm`)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from storeflow import __version__
from storeflow.context import AppContext, get_context
from storeflow.errors import EXIT_FAILED, StoreflowError
from storeflow.logs import redact, redacting_console

console = redacting_console()
err_console = redacting_console(stderr=True)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="storeflow TOML file (default: $STOREFLOW_CONFIG, else ./storeflow.toml)."),
]
LogLevelOpt = Annotated[
    str | None,
    typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR (DEBUG also shows debug lines on the console)."),
]

app = typer.Typer(
    name="storeflow",
    help=(
        "storeflow moves a multi-store retailer's operational data: vendor portals (Hallmark Connect, "
        "TumbleDry, UClean) into PostgreSQL, and Shopify prices out to Hipoink shelf labels.\n\n"
        "Start with `storeflow demo` (no credentials, no network needed)."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"storeflow {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: ConfigOpt = None,
    log_level: LogLevelOpt = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    ctx.obj = AppContext(config_path=config, log_level=log_level)
    ctx.call_on_close(ctx.obj.close)


# ---------------------------------------------------------------- db

db_app = typer.Typer(help="The PostgreSQL database: migrations, status, connection URL.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("migrate")
def db_migrate(ctx: typer.Context) -> None:
    """Apply pending schema migrations (every command that needs the database does this too)."""
    from storeflow.db.migrate import migrate_database

    db = get_context(ctx).database(migrate=False)
    report = migrate_database(db)
    console.print(
        f"applied {len(report.storeflow) + len(report.procrastinate)} migration(s)"
        + "".join(f"\n  {m.version:04d}_{m.name}" for m in report.storeflow)
        + "".join(f"\n  {name}" for name in report.procrastinate)
    )


@db_app.command("status")
def db_status(ctx: typer.Context) -> None:
    """List applied and pending migrations."""
    from storeflow.db.migrate import migration_status, procrastinate_status
    from storeflow.db.procrastinate import procrastinate_version

    db = get_context(ctx).database(migrate=False)
    table = Table("version", "name", "state")
    for version, name, state in migration_status(db):
        table.add_row(f"{version:04d}", name, state)
    console.print(f"database: {db.kind}")
    console.print(table)
    jobs = Table("migration", "state", title=f"procrastinate {procrastinate_version()} (jobs)")
    for name, state in procrastinate_status(db):
        jobs.add_row(name, state)
    console.print(jobs)


@db_app.command("url")
def db_url(
    ctx: typer.Context,
    show_password: Annotated[bool, typer.Option("--show-password", help="Print the password too.")] = False,
) -> None:
    """Print the connection URL in use (for psql and scripts)."""
    from storeflow.db.connect import mask_url

    db = get_context(ctx).database(migrate=False)
    typer.echo(db.url if show_password else mask_url(db.url))


@db_app.command("schema")
def db_schema(
    ctx: typer.Context,
    write: Annotated[bool, typer.Option("--write", help="Rewrite src/storeflow/db/schema.sql.")] = False,
) -> None:
    """Print the schema a freshly migrated database has (pg_dump of a scratch database on this server)."""
    from storeflow.db.schema import SCHEMA_FILE, snapshot

    text = snapshot(get_context(ctx).database(migrate=False).url)
    if write:
        SCHEMA_FILE.write_text(text, encoding="utf-8")
        console.print(f"wrote {SCHEMA_FILE}")
    else:
        typer.echo(text, nl=False)


@db_app.command("stop")
def db_stop(ctx: typer.Context) -> None:
    """Stop the embedded PostgreSQL server (it otherwise keeps running between commands)."""
    from storeflow.db.embedded import stop_embedded

    stopped = stop_embedded(get_context(ctx).settings.home)
    console.print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")


# ---------------------------------------------------------------- config

config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print every effective setting and where it came from (secrets masked)."""
    from storeflow.settings import describe

    settings = get_context(ctx).settings
    table = Table("setting", "value", "source", show_lines=False)
    for name, value, source in describe(settings):
        table.add_row(name, value, source)
    console.print(table)


# ---------------------------------------------------------------- sandbox

from storeflow.sandbox.cli import app as sandbox_app  # noqa: E402

app.add_typer(sandbox_app, name="sandbox")


# ---------------------------------------------------------------- pipelines

from storeflow.crm.cli import app as crm_app  # noqa: E402
from storeflow.esl.cli import app as esl_app  # noqa: E402
from storeflow.hallmark.cli import app as hallmark_app  # noqa: E402

app.add_typer(hallmark_app, name="hallmark")
app.add_typer(crm_app, name="crm")
app.add_typer(esl_app, name="esl")

from storeflow.dashboard.cli import alerts_app  # noqa: E402

app.add_typer(alerts_app, name="alerts")

from storeflow.jobs.cli import app as jobs_app  # noqa: E402
from storeflow.jobs.cli import worker_command  # noqa: E402

app.add_typer(jobs_app, name="jobs")
app.command("worker")(worker_command)


# ---------------------------------------------------------------- doctor, demo, serve


@app.command()
def doctor(ctx: typer.Context) -> None:
    """Check configuration, database, browser and stored sessions; say how to fix what is missing."""
    from storeflow.doctor import run_checks

    checks = run_checks(get_context(ctx))
    failed = False
    for check in checks:
        mark = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}[check.status]
        console.print(f"{mark:>16}  {check.name}: {check.detail}")
        failed |= check.status == "fail"
    if failed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def demo(
    ctx: typer.Context,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the dashboard afterwards until Ctrl-C.")
    ] = True,
    only: Annotated[str | None, typer.Option(help="Comma-separated pipelines: hallmark,crm,esl.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sandbox data.")] = 7,
) -> None:
    """Run every pipeline end to end against the sandbox and the embedded database (no credentials)."""
    from storeflow.demo import run_demo

    code = run_demo(get_context(ctx), only=only, seed=seed, serve=serve, console=console)
    raise typer.Exit(code)


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1, max=64, help="Server processes on the one port (2 or more: SIGHUP replaces them without a gap)."
        ),
    ] = 1,
) -> None:
    """Serve the web app: ESL webhooks and API, the operator dashboard and /metrics."""
    from storeflow.web.server import serve_app

    serve_app(get_context(ctx), host, port, workers=workers)


# ---------------------------------------------------------------- entry points


def _sigterm(signum: int, frame: object) -> None:
    # cron/systemd stop a run with SIGTERM: unwind like Ctrl-C so checkpoints and audits are written
    raise KeyboardInterrupt


def _run(typer_app: typer.Typer, args: list[str] | None = None) -> None:
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        typer_app(args=args, prog_name=None)
    except StoreflowError as exc:
        err_console.print(Text.assemble(("error: ", "red"), redact(str(exc))), highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


def main() -> None:
    _run(app)


crm_download_app = typer.Typer(
    name="crm_download",
    help="TumbleDry + UClean report downloads and ingestion (spec 001); the same as `storeflow crm`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
crm_download_app.callback()(root)
for _cmd in crm_app.registered_commands:
    crm_download_app.registered_commands.append(_cmd)
for _group in crm_app.registered_groups:
    crm_download_app.registered_groups.append(_group)


def crm_main() -> None:
    _run(crm_download_app)
