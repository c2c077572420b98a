"""`storeflow hallmark ...` (spec 000)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Hallmark Connect order and billing extraction (spec 000).", no_args_is_help=True)
