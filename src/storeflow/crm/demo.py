"""`storeflow demo` step for spec 001: bootstrap, then download + ingest all four sandbox stores as jobs."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import httpx

from storeflow.crm.runner import run_bootstrap
from storeflow.demo import DemoContext, DemoResult, run_demo_jobs
from storeflow.jobs.names import CRM_DOWNLOAD
from storeflow.jobs.policy import worst_exit_code

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
    window = {"crm": "all", "store": "all", "start": start.isoformat(), "end": end.isoformat()}
    first = run_demo_jobs(ctx, CRM_DOWNLOAD, **window)
    # the second run converges: same files, recorded as duplicates, facts unchanged
    again = run_demo_jobs(ctx, CRM_DOWNLOAD, **window)
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
    figures.append(("re-run", ", ".join(sorted({(j["detail"] or {}).get("status", j["status"]) for j in again}))))
    first_code, again_code = (worst_exit_code(_codes(jobs)) for jobs in (first, again))
    ok = first_code == 0 and again_code == 0 and matches
    note = f"{start}..{end}, facts match /_sandbox/truth" if matches else "facts differ from the sandbox truth"
    if first_code:
        note = "; ".join(f"{(j['detail'] or {}).get('store')}: {j['error']}" for j in first if j["error"])
    return DemoResult("crm", ok, figures=figures, note=note)


def _codes(jobs: list[dict[str, Any]]) -> list[int]:
    return [j["exit_code"] if j["exit_code"] is not None else (0 if j["status"] == "succeeded" else 1) for j in jobs]
