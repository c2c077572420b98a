"""`storeflow esl ...` (spec 002)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Shopify -> Hipoink shelf-label sync (spec 002).", no_args_is_help=True)
