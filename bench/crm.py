"""Benchmarks for spec 001 (CRM downloads and ingestion).

1. Ingest an N-row TumbleDry order report into fact_td_orders (fresh, then again with 10% of
   rows changed) vs pandas.read_excel(openpyxl) + DataFrame.to_sql on the same file and database;
   and vs python-calamine reading the file alone.
2. All four sandbox stores, download + ingest of one day each: concurrent vs sequential (each simulated
   portal takes --report-delay seconds to build a report, as real ones do).

Usage: python bench/crm.py [--quick] [--rows N] [--database-url URL]
(database: --database-url, else $BENCH_DATABASE_URL / $TEST_DATABASE_URL, else the embedded server).
Writes bench/results/crm.json and bench/results/crm.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
from embedded_pg import embedded_server
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def metric(name: str, value: float, unit: str, baseline: float | None, target: str, met: bool | None) -> dict[str, Any]:
    ratio = round(value / baseline, 3) if baseline else None
    return {
        "metric": name,
        "value": round(value, 3),
        "unit": unit,
        "baseline_value": round(baseline, 3) if baseline is not None else None,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def make_rows(n: int, revision: int = 0) -> list[dict[str, Any]]:
    from storeflow.sandbox.tumbledry import order_rows

    rows: list[dict[str, Any]] = []
    day = date(2020, 1, 1)
    while len(rows) < n:
        rows.extend(order_rows(0, "a668", day))
        day += timedelta(days=1)
    rows = rows[:n]
    if revision:
        rng = random.Random(7)
        for row in rng.sample(rows, n // 10):
            row["Net Amount"] = round(row["Net Amount"] + 1, 2)
            row["Order Status"] = "Delivered"
    return rows


def write_report(path: Path, rows: list[dict[str, Any]]) -> None:
    from storeflow.sandbox.tumbledry import order_report_xlsx

    path.write_bytes(order_report_xlsx(rows, date(2020, 1, 1), date(2020, 12, 31)))


def fresh_database(server: str) -> tuple[str, str]:
    from psycopg.conninfo import make_conninfo

    from storeflow.db.connect import Database
    from storeflow.db.migrate import migrate

    name = f"bench_crm_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(server, dbname=name)
    db = Database(url)
    migrate(db)
    db.close()
    return url, name


def drop_database(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def bench_ingest(server: str, n: int, work: Path) -> list[dict[str, Any]]:
    from python_calamine import CalamineWorkbook

    from storeflow.crm.ingest import FileInfo, ingest_file
    from storeflow.db import connect

    first, second = work / "TD_OrderReport_bench_fresh.xlsx", work / "TD_OrderReport_bench_changed.xlsx"
    t = time.perf_counter()
    write_report(first, make_rows(n))
    write_report(second, make_rows(n, revision=1))
    print(f"  wrote 2 reports of {n} rows in {time.perf_counter() - t:.1f}s", file=sys.stderr)

    t = time.perf_counter()
    wb = CalamineWorkbook.from_path(str(first))
    wb.get_sheet_by_index(0).to_python()
    calamine_read = time.perf_counter() - t

    url, name = fresh_database(server)
    try:
        info = FileInfo(uuid.uuid4(), "td", "a668", "OrderReport", "bench", date(2020, 1, 1), date(2020, 12, 31))
        with connect(url) as conn:
            t = time.perf_counter()
            fresh = ingest_file(conn, first, info)
            ours_fresh = time.perf_counter() - t
            t = time.perf_counter()
            changed = ingest_file(conn, second, dataclasses.replace(info, run_id=uuid.uuid4()))
            ours_changed = time.perf_counter() - t
        assert fresh.status == "ok" and fresh.inserted == n, fresh
        assert changed.status == "ok" and changed.updated == n // 10, changed
        print(f"  ours: fresh {ours_fresh:.2f}s, 10% changed {ours_changed:.2f}s", file=sys.stderr)
        copy_s, upsert_s = postgres_share(server, first, info)
        print(f"  PostgreSQL alone: COPY {copy_s:.2f}s + upsert {upsert_s:.2f}s", file=sys.stderr)

        import pandas as pd
        from sqlalchemy import create_engine

        engine = create_engine(_sqlalchemy_url(url))
        try:
            t = time.perf_counter()
            frame = pd.read_excel(first, engine="openpyxl")
            frame.to_sql("bench_pandas_td", engine, if_exists="append", index=False, chunksize=1000)
            base_fresh = time.perf_counter() - t
            t = time.perf_counter()
            frame = pd.read_excel(second, engine="openpyxl")
            frame.to_sql("bench_pandas_td", engine, if_exists="append", index=False, chunksize=1000)
            base_changed = time.perf_counter() - t
        finally:
            engine.dispose()
        print(f"  pandas: fresh {base_fresh:.2f}s, changed {base_changed:.2f}s", file=sys.stderr)
    finally:
        drop_database(server, name)
    return [
        metric(f"ingest {n} rows fresh (vs pandas+openpyxl+to_sql)", ours_fresh, "s", base_fresh, ">= 10x faster",
               base_fresh / ours_fresh >= 10),
        metric(f"ingest {n} rows, 10% changed (vs pandas+openpyxl+to_sql)", ours_changed, "s", base_changed,
               ">= 10x faster", base_changed / ours_changed >= 10),
        metric(f"ingest {n} rows fresh (vs calamine read alone)", ours_fresh, "s", calamine_read,
               "<= 1.5x calamine read", ours_fresh <= 1.5 * calamine_read),
        metric("PostgreSQL's own part of that ingest: COPY + upsert of preformatted rows (vs calamine read)",
               copy_s + upsert_s, "s", calamine_read, "(informative: the database's floor)", None),
    ]  # fmt: skip


def postgres_share(server: str, path: Path, info: Any) -> tuple[float, float]:
    """The database's own time for one fresh ingest of ``path``: COPY of rows already formatted as COPY
    text into staging, then the upsert into the facts (storeflow's statements, in a fresh database).
    Reading, converting and formatting happen before the clock starts: no client can go below this."""
    from storeflow.crm import ingest
    from storeflow.crm.reports import parse_report
    from storeflow.db import connect

    parsed = parse_report(path, "td")
    url, name = fresh_database(server)
    try:
        with connect(url) as conn:
            ledger_id = ingest._ledger(conn, info, path.name, "0" * 32, path.stat().st_size)
            chunks = list(ingest.copy_chunks(info, ledger_id, parsed))
            t = time.perf_counter()
            with conn.cursor() as cur, cur.copy(ingest.copy_statement("td", parsed)) as copy:
                for chunk in chunks:
                    copy.write(chunk)
            copied = time.perf_counter() - t
            t = time.perf_counter()
            inserted, _updated = ingest.upsert(conn, info, ledger_id, parsed.shape, unique_keys=True)
            conn.commit()
            upserted = time.perf_counter() - t
            assert inserted == len(parsed.row_numbers)
    finally:
        drop_database(server, name)
    return copied, upserted


def _sqlalchemy_url(conninfo: str) -> Any:
    """The same server for SQLAlchemy; a socket directory (the embedded server) stays libpq's ``host``."""
    from psycopg.conninfo import conninfo_to_dict
    from sqlalchemy.engine import URL

    parts = conninfo_to_dict(conninfo)
    host, port = parts.get("host") or "127.0.0.1", parts.get("port") or "5432"
    query = {}
    if str(host).startswith("/"):  # a Unix socket directory cannot be written as host:port
        query, host = {"host": str(host), "port": str(port)}, None
    return URL.create(
        "postgresql+psycopg",
        username=parts.get("user") or "postgres",
        password=parts.get("password") or None,
        host=host,
        port=int(port) if host else None,
        database=parts["dbname"],
        query=query,
    )


def bench_stores(server: str, work: Path, report_delay: float) -> list[dict[str, Any]]:
    from storeflow.crm.progress import Progress
    from storeflow.crm.runner import DownloadOptions, run_bootstrap, run_download
    from storeflow.db.connect import Database
    from storeflow.sandbox.host import SandboxHost
    from storeflow.settings import load_settings

    url, name = fresh_database(server)
    host = SandboxHost(["tumbledry", "uclean"], port_base=0, seed=3)
    host.start_in_thread()
    for sim in ("tumbledry", "uclean"):  # every portal takes this long to build a report
        host.sim(sim).report_delay = report_delay  # type: ignore[attr-defined]
    db = Database(url)
    try:
        config = work / "sb" / "storeflow.toml"
        host.write_config(config)
        settings = load_settings(config, env={})
        settings.config.crm.profiles_dir = work / "profiles"
        settings.config.crm.download_dir = work / "downloads"
        stores = settings.config.crm.stores
        boot = asyncio.run(run_bootstrap(settings, stores, None, True, False))
        assert all(o.status == "ok" for o in boot), boot
        timings = {}
        per_store: list[float] = []
        for label, concurrency, day in (("sequential", 1, "2025-11-10"), ("concurrent", 4, "2025-11-11")):
            settings.config.crm.concurrency = concurrency
            opts = DownloadOptions(start=day, end=day, headless=True, alert=False, command="bench")
            t = time.perf_counter()
            summary = asyncio.run(run_download(settings, db, stores, opts, Progress([s.key for s in stores])))
            timings[label] = time.perf_counter() - t
            assert summary.exit_code == 0, [o.as_dict() for o in summary.outcomes]
            per_store += [o.seconds for o in summary.outcomes]
            print(f"  {label}: {timings[label]:.2f}s", file=sys.stderr)
    finally:
        db.close()
        host.stop()
        drop_database(server, name)
    ratio = timings["concurrent"] / timings["sequential"]
    return [
        metric("4 stores, 1 day each, concurrent (vs sequential)", timings["concurrent"], "s", timings["sequential"],
               "<= 0.5x sequential", ratio <= 0.5),
        metric("slowest single store download + ingest", max(per_store), "s", None, "<= 60 s", max(per_store) <= 60),
    ]  # fmt: skip


def write_results(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "crm.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# CRM benchmark (spec 001)",
        "",
        f"Command: `python bench/crm.py{' --quick' if args.quick else ''} --rows {args.rows}` "
        f"on {os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"simulated report generation {args.report_delay:g} s per report; PostgreSQL on 127.0.0.1 "
        "(shared with other test runs, so absolute times are noisy).",
        "",
        "| metric | value | unit | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        base = r["baseline_value"] if r["baseline_value"] is not None else "-"
        ratio = r["ratio"] if r["ratio"] is not None else "-"
        lines.append(
            f"| {r['metric']} | {r['value']} | {r['unit']} | {base} | {ratio} | {r['target']} | "
            f"{ {True: 'yes', False: 'no', None: '-'}[r['met']] } |"
        )
    (RESULTS / "crm.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20,000 rows instead of 100,000 (under 3 minutes)")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL")
    )
    parser.add_argument(
        "--report-delay", type=float, default=3.0, help="seconds each simulated portal takes to build a report"
    )
    args = parser.parse_args()
    args.rows = args.rows or (20_000 if args.quick else 100_000)
    with contextlib.ExitStack() as stack:
        server = args.database_url or stack.enter_context(embedded_server())
        with tempfile.TemporaryDirectory(prefix="bench-crm-") as tmp:
            work = Path(tmp)
            results = bench_ingest(server, args.rows, work)
            results += bench_stores(server, work, args.report_delay)
    write_results(results, args)


if __name__ == "__main__":
    main()
