"""The Hallmark step of `storeflow demo`: bulk orders + billing as jobs (MFA login), import, compare with the truth."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

import httpx

from storeflow.hallmark.stores import upsert_stores
from storeflow.jobs.names import HALLMARK_BULK_BILLING, HALLMARK_BULK_ORDERS, HALLMARK_IMPORT

if TYPE_CHECKING:
    from storeflow.demo import DemoContext, DemoResult

START, END = date(2025, 3, 1), date(2025, 3, 14)
RUN_IDS = """
SELECT count(*) AS n, COALESCE(sum(o.order_total), 0) AS total, COALESCE(sum(o.line_count), 0) AS lines
FROM orders o JOIN hallmark_run_items i ON i.record_id = o.order_id AND i.kind = 'order'
WHERE i.run_id = %s
"""


def run_demo(ctx: DemoContext) -> DemoResult:
    from storeflow.demo import DemoResult, run_demo_jobs

    settings = ctx.settings
    with ctx.db.transaction() as conn:
        upsert_stores(conn, settings.config.hallmark.stores)

    ctx.console.print(f"  bulk orders {START}..{END} for {len(settings.config.hallmark.default_customer_ids)} stores")
    window = {"start": START.isoformat(), "end": END.isoformat()}
    # each extraction defers an import of the files it wrote; the last import reads the whole folder
    order_jobs = run_demo_jobs(ctx, HALLMARK_BULK_ORDERS, **window)
    bill_jobs = run_demo_jobs(ctx, HALLMARK_BULK_BILLING, **window)
    import_jobs = run_demo_jobs(ctx, HALLMARK_IMPORT)
    orders, bills, imported = (jobs[0]["detail"] or {} for jobs in (order_jobs, bill_jobs, import_jobs))
    extracted_ok = all(j["status"] == "succeeded" for j in (*order_jobs, *bill_jobs))
    truth = httpx.get(
        f"{settings.BASE_URL.rstrip('/')}/_sandbox/truth",
        params={"customer_ids": "all", "start": START.isoformat(), "end": END.isoformat()},
    ).json()
    with ctx.db.transaction() as conn:
        row = conn.execute(RUN_IDS, (orders.get("run_id"),)).fetchone()
    assert row is not None
    total = Decimal(row["total"]).quantize(Decimal("0.01"))
    logins = orders.get("logins", 0) + bills.get("logins", 0)
    reused = int(bool(orders.get("reused_session"))) + int(bool(bills.get("reused_session")))
    ok = (
        extracted_ok
        and row["n"] == truth["orders"]
        and row["lines"] == truth["order_lines"]
        and total == Decimal(truth["order_total"])
        and bills.get("found") == truth["billing_documents"]
        and import_jobs[0]["status"] == "succeeded"
        and not imported.get("failed")
    )
    figures = [
        ("orders (portal truth)", f"{row['n']} ({truth['orders']})"),
        ("order lines (truth)", f"{row['lines']} ({truth['order_lines']})"),
        ("order total (truth)", f"${total:,} (${Decimal(truth['order_total']):,})"),
        ("billing documents (truth)", f"{bills.get('found')} ({truth['billing_documents']})"),
        (
            "downloaded / skipped",
            f"{orders.get('downloaded', 0) + bills.get('downloaded', 0)} / "
            f"{orders.get('skipped', 0) + bills.get('skipped', 0)}",
        ),
        ("logins", f"{logins} (MFA {settings.MFA_METHOD}), reused {reused}"),
        ("files imported", f"{imported.get('files', 0)} into orders/billing_documents"),
    ]
    failed = [j for j in (*order_jobs, *bill_jobs, *import_jobs) if j["status"] != "succeeded"]
    note = (
        ""
        if ok
        else "; ".join(f"{j['task_name']}: {j['error']}" for j in failed)
        or ("imported figures differ from the simulator's truth")
    )
    return DemoResult("hallmark", ok, figures, note)
