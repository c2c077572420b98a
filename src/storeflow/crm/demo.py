"""`storeflow demo` step for spec 001: bootstrap + download + ingest all four sandbox stores."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import httpx

from storeflow.crm.progress import Progress
from storeflow.crm.runner import DownloadOptions, run_bootstrap, run_download
from storeflow.demo import DemoContext, DemoResult

FACTS = """
SELECT 'td_' || store_code AS store, count(*) AS n, coalesce(sum(net_amount), 0)::float AS amount
FROM fact_td_orders WHERE order_date BETWEEN %(a)s AND %(b)s GROUP BY 1
UNION ALL
SELECT 'uc_' || store_code, count(*), coalesce(sum(final_amount), 0)::float
FROM fact_uc_gst WHERE invoice_date BETWEEN %(a)s AND %(b)s GROUP BY 1
"""


def run_demo(ctx: DemoContext) -> DemoResult:
    settings = ctx.settings
    stores = [s for s in settings.config.crm.stores if s.enabled]
    if not stores:
        return DemoResult("crm", False, note="the sandbox config has no [[crm.stores]]")
    for name in ("tumbledry", "uclean"):
        running = ctx.sandbox.sims.get(name)
        if running is not None:
            running.sim.report_delay = 0.5  # type: ignore[attr-defined]
    boot = asyncio.run(run_bootstrap(settings, stores, None, True, False, ctx.db))
    failed = [o for o in boot if o.status != "ok"]
    if failed:
        return DemoResult("crm", False, note="; ".join(f"{o.key}: {o.error}" for o in failed))
    end = date.today()
    start = end - timedelta(days=2)
    options = DownloadOptions(start=start.isoformat(), end=end.isoformat(), headless=True, alert=False, command="demo")
    summary = asyncio.run(
        run_download(settings, ctx.db, stores, options, Progress([s.key for s in stores], ctx.console))
    )
    # the second run converges: same files, recorded as duplicates, facts unchanged
    again = asyncio.run(run_download(settings, ctx.db, stores, options, Progress([s.key for s in stores])))
    with ctx.db.transaction() as conn:
        facts = {r["store"]: (r["n"], round(r["amount"], 2)) for r in conn.execute(FACTS, {"a": start, "b": end})}
    figures: list[tuple[str, str]] = []
    matches = True
    for store in stores:
        sim = "tumbledry" if store.crm == "td" else "uclean"
        url = ctx.sandbox.urls[sim]
        truth = httpx.get(
            f"{url}/_sandbox/truth", params={"store": store.code, "from": start.isoformat(), "to": end.isoformat()}
        ).json()
        rows, amount = facts.get(store.key, (0, 0.0))
        same = (rows, amount) == (truth["rows"], truth["net_amount"])
        matches = matches and same
        figures.append((store.key, f"{rows} rows, net {amount:,.2f} ({store.mode}){'' if same else ' MISMATCH'}"))
    figures.append(("re-run", ", ".join(sorted({o.status for o in again.outcomes}))))
    ok = summary.exit_code == 0 and again.exit_code == 0 and matches
    note = f"{start}..{end}, facts match /_sandbox/truth" if matches else "facts differ from the sandbox truth"
    if summary.exit_code:
        note = "; ".join(f"{o.key}: {o.error}" for o in summary.outcomes if o.error)
    return DemoResult("crm", ok, figures=figures, note=note)
