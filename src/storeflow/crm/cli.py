"""`storeflow crm ...` / `crm_download ...` (spec 001)."""

from __future__ import annotations

import typer

app = typer.Typer(help="TumbleDry + UClean report downloads and ingestion (spec 001).", no_args_is_help=True)
