"""`storeflow alerts ...`: send a sample alert, or evaluate the alert conditions once (for cron)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from storeflow.alerts import alert_channels, send_alert
from storeflow.context import get_context
from storeflow.errors import EXIT_CONFIG, EXIT_FAILED
from storeflow.logs import redacting_console

alerts_app = typer.Typer(
    help="Operator alerts (webhook and/or mail): failing stores, sessions to bootstrap, dead letters, old queues.",
    no_args_is_help=True,
)
console = redacting_console()


def _channels_or_exit(names: list[str]) -> None:
    if not names:
        console.print(
            "[red]no alert channel configured[/]: set ALERT_WEBHOOK_URL, or SMTP_HOST and SMTP_TO "
            "(see docs/dashboard.md)"
        )
        raise typer.Exit(EXIT_CONFIG)


@alerts_app.command("test")
def alerts_test(ctx: typer.Context) -> None:
    """Send a sample alert on every configured channel and say what happened."""
    from storeflow.dashboard.alerts import dashboard_url, record_test, sample_payload

    app_ctx = get_context(ctx)
    settings = app_ctx.settings
    _channels_or_exit(alert_channels(settings))
    payload = sample_payload(datetime.now(UTC), dashboard_url(settings))
    outcome = send_alert(settings, payload)
    try:
        with app_ctx.database().pool.connection() as conn:
            record_test(conn, payload, outcome)
    finally:
        app_ctx.close()
    for channel, result in outcome.items():
        colour = "green" if result == "sent" else "red"
        console.print(f"{channel}: [{colour}]{result}[/]")
    if any(result != "sent" for result in outcome.values()):
        raise typer.Exit(EXIT_FAILED)


@alerts_app.command("check")
def alerts_check(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the conditions and the messages due; send and record nothing.")
    ] = False,
) -> None:
    """Evaluate every alert condition once and send what is new, due again, or resolved (run from cron)."""
    from storeflow.dashboard.alerts import preview, run_check

    app_ctx = get_context(ctx)
    settings = app_ctx.settings
    if not dry_run:
        _channels_or_exit(alert_channels(settings))
    try:
        with app_ctx.database().pool.connection() as conn:
            report = preview(settings, conn) if dry_run else run_check(settings, conn)
    finally:
        app_ctx.close()
    console.print(f"{len(report.conditions)} condition(s) hold; {len(report.decisions)} message(s) due")
    if dry_run:
        for cond in report.conditions:
            console.print(f"  holds  {cond.key}: {cond.summary}")
        for decision in report.decisions:
            console.print(f"  would send {decision.action:<9} {decision.key}")
        return
    for decision, outcome in zip(report.decisions, report.outcomes, strict=True):
        result = ", ".join(f"{k}: {v}" for k, v in outcome.items())
        console.print(f"  {decision.action:<9} {decision.key}  ({result})")
    if report.decisions and report.delivered < len(report.decisions):
        raise typer.Exit(EXIT_FAILED)
