"""`storeflow sandbox ...`: run the simulators."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import Annotated

import typer

from storeflow.context import get_context
from storeflow.sandbox.host import SandboxHost, parse_only
from storeflow.sandbox.registry import SIMULATORS
from storeflow.sandbox.shopify import app as shopify_app

app = typer.Typer(
    help="Simulators of every external system (Hallmark, TumbleDry, UClean, Hipoink, Shopify).",
    no_args_is_help=True,
)
app.add_typer(shopify_app, name="shopify")


@app.command("up")
def up(
    ctx: typer.Context,
    only: Annotated[
        str | None,
        typer.Option(help=f"Comma-separated simulators to run (default all: {','.join(SIMULATORS)})."),
    ] = None,
    port_base: Annotated[
        int, typer.Option(help="First port; simulators take consecutive ports (0 = any free ports).")
    ] = 18000,
    seed: Annotated[int, typer.Option(help="Seed of the deterministic data.")] = 0,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 in a container).")] = "127.0.0.1",
    public_host: Annotated[
        str | None, typer.Option(help="Host name clients reach the simulators by (default: --host).")
    ] = None,
    stores: Annotated[
        int | None,
        typer.Option(
            min=2,
            help="Stores per CRM simulator (TumbleDry, UClean): the spec's two, then generated ones (s001..., "
            "sandbox01...) with credentials in the written .env. Default: the spec's two each.",
        ),
    ] = None,
    report_delay: Annotated[
        float | None,
        typer.Option(min=0, help="Seconds the CRM simulators take to build a report (default: theirs, 1 s)."),
    ] = None,
    write_config: Annotated[
        Path | None,
        typer.Option(help="Write a storeflow TOML here (and a .env beside it) pointing every client at the sandbox."),
    ] = None,
) -> None:
    """Run simulators on --host until SIGINT/SIGTERM; print {name: base_url} as one JSON line when ready."""
    _ = get_context(ctx).settings  # logging set up, config validated
    sandbox = SandboxHost(
        parse_only(only, SIMULATORS), port_base=port_base, seed=seed, host=host, public_host=public_host,
        crm_stores=stores, report_delay=report_delay,
    )  # fmt: skip
    sandbox.bind()
    if write_config is not None:
        sandbox.write_config(write_config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, sandbox.request_stop)
        serving = asyncio.ensure_future(sandbox.serve())
        while not sandbox._ready.is_set() and not serving.done():
            await asyncio.sleep(0.01)
        if not serving.done():
            typer.echo(json.dumps(sandbox.urls), nl=True)
        with contextlib.suppress(asyncio.CancelledError):
            await serving

    asyncio.run(main())
