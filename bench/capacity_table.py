# ruff: noqa: E501  (rows of markdown tables read better whole)
"""docs/capacity.md's numbers, computed from bench/results/scale_costs.json (`bench/scale.py --only costs`).

    python bench/capacity_table.py            # print the tables
    python bench/capacity_table.py --write    # replace them in docs/capacity.md (between the markers)
    python bench/capacity_table.py --check    # exit 1 when docs/capacity.md is out of date

Every input is a metric of the results file, named in the output; every other number is an assumption
listed in ASSUMPTIONS or a default of storeflow.settings (the Hallmark pacing), so a new benchmark run (or
another assumption) refreshes the document in one step.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from storeflow.settings import Settings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scale_costs.json"
DOC = ROOT / "docs" / "capacity.md"
PACING = ("RATE_LIMIT_DETAIL_SECONDS", "RATE_LIMIT_JITTER_SECONDS", "BREAK_DURATION_SECONDS", "BREAK_AFTER_REQUESTS")
BEGIN, END = "<!-- capacity-table:begin -->", "<!-- capacity-table:end -->"

# name -> (value, what it stands for); none of these is measured
ASSUMPTIONS: dict[str, tuple[float, str]] = {
    "utilisation": (0.7, "CPU share a process or server is planned to, leaving room for bursts, vacuum, GC"),
    "labels_per_webhook": (1.0, "queue items per products/* webhook (variants x Hipoink stores of the shop)"),
    "pg_max_cores": (32.0, "cores one PostgreSQL primary is run with before splitting (a large common instance)"),
    "retention_days": (7.0, "days webhook_inbox and sync_log rows are kept (today: forever)"),
    "pg_max_storage_tb": (10.0, "data one PostgreSQL primary holds before backup, restore and vacuum times hurt"),
    "pg_max_wal_mb_s": (50.0, "WAL one primary ships and one standby replays comfortably (room for full-page images)"),
    "crm_worker_cores": (2.0, "cores of one CRM worker machine"),
    "crm_runs_per_day": (4.0, "runs of every store per day"),
    "crm_portal_wait_s": (60.0, "a real portal's report build per store run (the sandbox's: 3 s)"),
    "crm_concurrency": (16.0, "stores in flight at once in one worker (crm.concurrency; default 4)"),
    "crm_rows_per_run": (500.0, "report rows one store run ingests"),
    "crm_browser_budget_mb": (3000.0, "memory of the worker machine given to the browser"),
}


def load(path: Path = RESULTS) -> dict[str, float]:
    return {row["metric"]: float(row["value"]) for row in json.loads(path.read_text())}


def fmt(x: float) -> str:
    if float(x).is_integer():
        return f"{int(x):,}"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def tables(m: dict[str, float]) -> str:
    a = {k: v for k, (v, _) in ASSUMPTIONS.items()}
    u, lpw = a["utilisation"], a["labels_per_webhook"]
    # the dearer of a new product and a price change, per webhook and per label
    worse = {
        key: max(m[f"webhook_{key}"], m[f"webhook_create_{key}"])
        for key in ("receiver_cpu_ms", "pg_cpu_ms", "wal_bytes", "storage_bytes", "rows_written", "index_entries")
    }
    worse |= {
        f"l_{key}": max(m[f"label_{key}"], m[f"label_create_{key}"])
        for key in ("worker_cpu_ms", "pg_cpu_ms", "wal_bytes", "storage_bytes", "rows_written", "index_entries")
    }
    out: list[str] = []
    units = {row["metric"]: row["unit"] for row in json.loads(RESULTS.read_text())}
    inputs = ["### Inputs (bench/results/scale_costs.json)", "", "| metric | value | unit |", "| --- | ---: | --- |"]
    for name in sorted(m):
        if name.startswith(("webhook", "label", "crm", "hallmark")):
            inputs.append(f"| `{name}` | {fmt(m[name])} | {units[name]} |")
    inputs += ["", "### Assumptions (not measured)", "", "| name | value | meaning |", "| --- | ---: | --- |"]
    inputs += [f"| `{k}` | {v:g} | {why} |" for k, (v, why) in ASSUMPTIONS.items()]

    pg_ms = worse["pg_cpu_ms"] + lpw * worse["l_pg_cpu_ms"]
    wal = worse["wal_bytes"] + lpw * worse["l_wal_bytes"]
    store = worse["storage_bytes"] + lpw * worse["l_storage_bytes"]
    out += [
        "",
        "### Shopify -> Hipoink at a sustained rate R (webhooks/s)",
        "",
        "Per webhook, the dearer of a new product and a price change (`webhook_create_*` and `webhook_*`; likewise "
        "`label_create_*` and `label_*`):",
        "",
        "| name | = | value |",
        "| --- | --- | ---: |",
        f"| receiver_ms | max(webhook_receiver_cpu_ms, webhook_create_receiver_cpu_ms) | {fmt(worse['receiver_cpu_ms'])} |",
        f"| worker_ms | max(label_worker_cpu_ms, label_create_worker_cpu_ms) | {fmt(worse['l_worker_cpu_ms'])} |",
        f"| pg_ms | max(webhook_*pg_cpu_ms) + labels_per_webhook x max(label_*pg_cpu_ms) = {fmt(worse['pg_cpu_ms'])} + "
        f"{lpw:g} x {fmt(worse['l_pg_cpu_ms'])} | {fmt(pg_ms)} |",
        f"| wal_B | max(webhook_*wal_bytes) + labels_per_webhook x max(label_*wal_bytes) = {fmt(worse['wal_bytes'])} + "
        f"{lpw:g} x {fmt(worse['l_wal_bytes'])} | {fmt(wal)} |",
        f"| storage_B | max(webhook_*storage_bytes) + labels_per_webhook x max(label_*storage_bytes) = "
        f"{fmt(worse['storage_bytes'])} + {lpw:g} x {fmt(worse['l_storage_bytes'])} | {fmt(store)} |",
        f"| rows | max(webhook_*rows_written) + labels_per_webhook x max(label_*rows_written) | "
        f"{fmt(worse['rows_written'] + lpw * worse['l_rows_written'])} |",
        f"| entries | max(webhook_*index_entries) + labels_per_webhook x max(label_*index_entries) | "
        f"{fmt(worse['index_entries'] + lpw * worse['l_index_entries'])} |",
        "",
        "| quantity | formula | R = 1,000/s | R = 10,000/s |",
        "| --- | --- | ---: | ---: |",
    ]
    rows = [
        ("receiver cores", "R x receiver_ms / 1000", lambda r: r * worse["receiver_cpu_ms"] / 1000),
        ("receiver processes", "ceil(cores / utilisation)", lambda r: math.ceil(r * worse["receiver_cpu_ms"] / 1000 / u)),
        ("worker cores", "R x labels_per_webhook x worker_ms / 1000", lambda r: r * lpw * worse["l_worker_cpu_ms"] / 1000),
        ("worker processes", "ceil(cores / utilisation)", lambda r: math.ceil(r * lpw * worse["l_worker_cpu_ms"] / 1000 / u)),
        ("PostgreSQL cores busy", "R x pg_ms / 1000", lambda r: r * pg_ms / 1000),
        ("PostgreSQL cores to provision", "ceil(busy / utilisation)", lambda r: math.ceil(r * pg_ms / 1000 / u)),
        ("rows written / s", "R x rows", lambda r: r * (worse["rows_written"] + lpw * worse["l_rows_written"])),
        ("index entries / s", "R x entries",
         lambda r: r * (worse["index_entries"] + lpw * worse["l_index_entries"])),
        ("WAL MB/s", "R x wal_B / 1e6", lambda r: r * wal / 1e6),
        ("WAL TB/day", "WAL MB/s x 86,400 / 1e6", lambda r: r * wal * 86400 / 1e12),
        ("tables' growth GB/day", "R x storage_B x 86,400 / 1e9", lambda r: r * store * 86400 / 1e9),
        (f"kept at {a['retention_days']:g} days' retention, TB", "growth x retention_days / 1000",
         lambda r: r * store * 86400 * a["retention_days"] / 1e12),
    ]  # fmt: skip
    for label, formula, f in rows:
        out.append(f"| {label} | {formula} | {fmt(f(1000))} | {fmt(f(10000))} |")
    r_cpu = a["pg_max_cores"] * u * 1000 / pg_ms
    r_disk = a["pg_max_storage_tb"] * 1e12 / (store * 86400 * a["retention_days"])
    r_wal = a["pg_max_wal_mb_s"] * 1e6 / wal
    limits = {"CPU": r_cpu, "storage": r_disk, "WAL": r_wal}
    first = min(limits, key=lambda k: limits[k])
    out += [
        "",
        "Where one PostgreSQL primary runs out (the rate R at which each limit is reached):",
        "",
        "| limit | formula | R (webhooks/s) |",
        "| --- | --- | ---: |",
        f"| CPU | pg_max_cores x utilisation x 1000 / pg_ms = {a['pg_max_cores']:g} x {u:g} x 1000 / {fmt(pg_ms)} "
        f"| {fmt(r_cpu)} |",
        f"| storage | pg_max_storage_tb x 1e12 / (storage_B x 86,400 x retention_days) = {a['pg_max_storage_tb']:g}e12 / "
        f"({fmt(store)} x 86,400 x {a['retention_days']:g}) | {fmt(r_disk)} |",
        f"| WAL | pg_max_wal_mb_s x 1e6 / wal_B = {a['pg_max_wal_mb_s']:g}e6 / {fmt(wal)} | {fmt(r_wal)} |",
        "",
        "The CPU figure is an upper bound: contention on WAL insertion and on the queue's hot pages grows with "
        "cores, which this 2-core machine cannot measure.",
    ]

    # CRM: one worker machine
    cpu_per_run = (
        m["crm_store_run_shared_cpu_s"] + a["crm_rows_per_run"] / 1000 * m["crm_ingest_cpu_ms_per_1000_rows"] / 1000
    )
    s_cpu = a["crm_worker_cores"] * u * 86400 / (a["crm_runs_per_day"] * cpu_per_run)
    wall = m["crm_store_run_wall_s"] - 3.0 + a["crm_portal_wait_s"]
    s_wall = a["crm_concurrency"] * 86400 / (a["crm_runs_per_day"] * wall)
    per_context = m["crm_browser_pss_mb_per_extra_store"]
    base = m["crm_store_run_browser_pss_peak_mb"] - per_context
    c_mem = (a["crm_browser_budget_mb"] - base) / per_context
    out += [
        "",
        "### CRM stores per worker machine",
        "",
        "| quantity | formula | value |",
        "| --- | --- | ---: |",
        f"| CPU s per store run | crm_store_run_shared_cpu_s + crm_rows_per_run / 1000 x crm_ingest_cpu_ms_per_1000_rows / 1000 "
        f"= {fmt(m['crm_store_run_shared_cpu_s'])} + {a['crm_rows_per_run']:g} / 1000 x "
        f"{fmt(m['crm_ingest_cpu_ms_per_1000_rows'])} / 1000 | {fmt(cpu_per_run)} |",
        f"| stores by CPU | crm_worker_cores x utilisation x 86,400 / (crm_runs_per_day x CPU s) | {fmt(s_cpu)} |",
        f"| wall s per store run | crm_store_run_wall_s - 3 + crm_portal_wait_s = {fmt(m['crm_store_run_wall_s'])} - 3 + "
        f"{a['crm_portal_wait_s']:g} | {fmt(wall)} |",
        f"| stores by wall time | crm_concurrency x 86,400 / (crm_runs_per_day x wall s) | {fmt(s_wall)} |",
        f"| stores in flight by memory | (crm_browser_budget_mb - (crm_store_run_browser_pss_peak_mb - crm_browser_pss_mb_per_extra_store)) "
        f"/ crm_browser_pss_mb_per_extra_store = ({a['crm_browser_budget_mb']:g} - {fmt(base)}) / {fmt(per_context)} "
        f"| {fmt(c_mem)} (>= crm_concurrency {a['crm_concurrency']:g}: {'yes' if c_mem >= a['crm_concurrency'] else '**no**'}) |",
        f"| **stores per worker** | min(by CPU, by wall time) | **{fmt(min(s_cpu, s_wall))}** |",
    ]  # fmt: skip

    # Hallmark: one portal account at the default pacing (storeflow.settings; http/policy.py: gap = interval +
    # U(0, jitter), a break of D +/- j seconds every N +/- j requests)
    d = {k: float(Settings.model_fields[k].default) for k in PACING}
    per_request = (
        d["RATE_LIMIT_DETAIL_SECONDS"] + d["RATE_LIMIT_JITTER_SECONDS"] / 2
        + d["BREAK_DURATION_SECONDS"] / d["BREAK_AFTER_REQUESTS"]
    )  # fmt: skip
    per_order = m["hallmark_requests_per_order"] * per_request
    out += [
        "",
        "### Hallmark orders per portal account",
        "",
        f"At the default pacing: RATE_LIMIT_DETAIL_SECONDS {d['RATE_LIMIT_DETAIL_SECONDS']:g} + mean jitter "
        f"RATE_LIMIT_JITTER_SECONDS / 2 = {d['RATE_LIMIT_JITTER_SECONDS'] / 2:g}, plus a BREAK_DURATION_SECONDS "
        f"{d['BREAK_DURATION_SECONDS']:g} s break every BREAK_AFTER_REQUESTS {d['BREAK_AFTER_REQUESTS']:g} requests "
        f"= {per_request:.2f} s per request (search pages counted at the detail interval); x "
        f"`hallmark_requests_per_order` {fmt(m['hallmark_requests_per_order'])} = {per_order:.2f} s per order "
        f"= 3600 / {per_order:.2f} = **{3600 / per_order:,.0f} orders "
        "an hour** per account, whatever the number of machines (the global limit of issue 14 holds them to it).",
    ]
    recv = [math.ceil(r * worse["receiver_cpu_ms"] / 1000 / u) for r in (1000, 10000)]
    work = [math.ceil(r * lpw * worse["l_worker_cpu_ms"] / 1000 / u) for r in (1000, 10000)]
    pgc = [math.ceil(r * pg_ms / 1000 / u) for r in (1000, 10000)]
    growth = [r * store * 86400 / 1e9 for r in (1000, 10000)]
    summary = [
        "### Summary",
        "",
        *(
            f"- **{r:,} webhooks/s**: receiver processes {p}, worker processes {w}, PostgreSQL cores {c}; the "
            f"tables grow {fmt(g)} GB a day."
            for r, p, w, c, g in zip((1000, 10000), recv, work, pgc, growth, strict=True)
        ),
        f"- One PostgreSQL primary stops being enough at about **{fmt(limits[first])} webhooks/s**, first by "
        f"{first} (CPU {fmt(r_cpu)}/s, storage at {a['retention_days']:g} days' retention {fmt(r_disk)}/s, "
        f"WAL {fmt(r_wal)}/s; see below).",
        f"- CRM: one {a['crm_worker_cores']:g}-core worker serves about {fmt(min(s_cpu, s_wall))} stores at "
        f"{a['crm_runs_per_day']:g} runs a day ({'wall time' if s_wall < s_cpu else 'CPU'} is the bound).",
        f"- Hallmark: about {3600 / per_order:,.0f} orders an hour per portal account at the default pacing.",
        "",
    ]
    return "\n".join([*summary, *out, "", *inputs]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help=f"replace the tables in {DOC.relative_to(ROOT)}")
    parser.add_argument("--check", action="store_true", help="exit 1 when the document's tables are out of date")
    args = parser.parse_args()
    text = tables(load())
    if not (args.write or args.check):
        sys.stdout.write(text)
        return 0
    doc = DOC.read_text()
    head, rest = doc.split(BEGIN, 1)
    current, tail = rest.split(END, 1)
    if args.check:
        fresh = current == f"\n{text}"
        print(f"{DOC.relative_to(ROOT)} {'matches' if fresh else 'is out of date with'} {RESULTS.relative_to(ROOT)}")
        return 0 if fresh else 1
    DOC.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
