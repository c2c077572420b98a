"""Shopify webhook sender (`storeflow sandbox shopify send`): placeholder until the ESL pipeline lands."""

from __future__ import annotations

import typer

app = typer.Typer(help="Send realistic signed Shopify webhooks to a URL.", no_args_is_help=True)
