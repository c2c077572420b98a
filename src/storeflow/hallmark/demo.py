"""The Hallmark step of `storeflow demo`: login with MFA, bulk orders + billing, import, compare with the truth."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx

from storeflow.hallmark import store
from storeflow.hallmark.auth import Authenticator
from storeflow.hallmark.extract import Extractor, ExtractRequest
from storeflow.hallmark.importer import import_directory

if TYPE_CHECKING:
    from storeflow.demo import DemoContext, DemoResult

START, END = date(2025, 3, 1), date(2025, 3, 14)


def run_demo(ctx: DemoContext) -> DemoResult:
    from storeflow.demo import DemoResult

    settings = ctx.settings
    with ctx.db.transaction() as conn:
        store.upsert_stores(conn, settings.config.hallmark.stores)
    auth = Authenticator(settings, headless=True)
    ctx.console.print(f"  bulk orders {START}..{END} for {len(settings.config.hallmark.default_customer_ids)} stores")
    orders = asyncio.run(Extractor(settings, ctx.db, auth).run(ExtractRequest("bulk-orders", start=START, end=END)))
    bills = asyncio.run(
        Extractor(settings, ctx.db, auth).run(ExtractRequest("bulk-billing-documents", start=START, end=END))
    )
    imported = import_directory(ctx.db, settings.OUTPUT_DIRECTORY)
    truth = httpx.get(
        f"{settings.BASE_URL.rstrip('/')}/_sandbox/truth",
        params={"customer_ids": "all", "start": START.isoformat(), "end": END.isoformat()},
    ).json()
    with ctx.db.transaction() as conn:
        fetched = store.run_order_totals(conn, orders.run_id)
    total = fetched.total.quantize(Decimal("0.01"))
    ok = (
        orders.status == store.RUN_OK
        and bills.status == store.RUN_OK
        and fetched.orders == truth["orders"]
        and fetched.lines == truth["order_lines"]
        and total == Decimal(truth["order_total"])
        and bills.found == truth["billing_documents"]
        and not imported.failed
    )
    figures = [
        ("orders (portal truth)", f"{fetched.orders} ({truth['orders']})"),
        ("order lines (truth)", f"{fetched.lines} ({truth['order_lines']})"),
        ("order total (truth)", f"${total:,} (${Decimal(truth['order_total']):,})"),
        ("billing documents (truth)", f"{bills.found} ({truth['billing_documents']})"),
        ("downloaded / skipped", f"{orders.downloaded + bills.downloaded} / {orders.skipped + bills.skipped}"),
        ("logins", f"{auth.logins} (MFA {settings.MFA_METHOD}), reused {auth.reused}"),
        ("files imported", f"{imported.files} into orders/billing_documents"),
    ]
    note = "" if ok else "imported figures differ from the simulator's truth"
    return DemoResult("hallmark", ok, figures, note)
