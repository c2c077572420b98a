"""Benchmarks of reconciliation against the Shopify Admin API simulator (issue 13), on this machine.

A shop of 50,000 variants (the webhook sender's generator: 1-4 variants per product, ids above
2^53) in the `shopify-admin` simulator, run as `storeflow sandbox up` in its own process; every
reconciliation is `storeflow esl reconcile --json` as an operator runs it.

1. Full reconciliation through a bulk operation into an empty database (every variant created).
2. Full reconciliation through a bulk operation, labels already in sync (the weekly run).
3. Full reconciliation through paginated queries, in sync, on a Shopify Plus bucket (20,000 points,
   1,000/s; the standard 100/s bucket would take ~10x longer, the cost is the same).
4. Incremental reconciliation after 1% of the products changed (new prices, no webhooks).

Wall time, Admin API cost used (``actualQueryCost`` summed) and THROTTLED answers: those the
simulator sent (waited out by the client) and those surfaced to the operator (failed runs).

    python bench/reconcile.py [--quick] [--database-url URL]

Results: bench/results/reconcile.json (one object per metric) and bench/results/reconcile.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SHOP = "bench-shop.myshopify.com"
STORE = "R01"
TOKEN_ENV = "SHOPIFY_TOKEN_BENCH_SHOP"
SEED = 11

sys.path.insert(0, str(ROOT / "src"))

from storeflow.sandbox.shopify import make_product  # noqa: E402


def products_for(variants: int) -> int:
    """How many generated products hold at least ``variants`` variants."""
    total = index = 0
    while total < variants:
        total += len(make_product(SEED, index)["variants"])
        index += 1
    return index


@contextmanager
def process(args: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def make_database(server_url: str) -> str:
    name = f"bench_reconcile_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    from storeflow.db.connect import Database
    from storeflow.db.migrate import migrate

    db = Database(url)
    migrate(db)
    db.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO store_mappings (source_store_id, hipoink_store_code) VALUES (%s, %s)", (SHOP, STORE))
    return url


def drop_database(server_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def server_url_from_args(given: str | None) -> str:
    return given or os.environ.get("TEST_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"


def reconcile(env: dict[str, str], cwd: Path, *args: str) -> dict[str, Any]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "storeflow", "esl", "reconcile", "--shop", SHOP, "--json", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        return {"failed": True, "wall": wall, "error": (done.stdout + done.stderr)[-500:]}
    [result] = json.loads(done.stdout)
    return {**result, "failed": False, "wall": wall}


def shop_state(admin_url: str) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(f"{admin_url}/_sandbox/state", timeout=30).json()["shops"][SHOP]
    return state


def create_shop(admin_url: str, products: int, size: float, rate: float) -> str:
    response = httpx.post(
        f"{admin_url}/_sandbox/shops",
        json={"shop": SHOP, "products": products, "seed": SEED, "bucket_size": size, "restore_rate": rate},
        timeout=600,
    )
    response.raise_for_status()
    token: str = response.json()["token"]
    return token


def metric(
    name: str, value: float, unit: str, target: str, met: bool | None, baseline: float | None = None, **extra: Any
) -> dict[str, Any]:
    """A row in the bench format (bench/esl.py's write_table); ``baseline`` gives the ratio."""
    ratio = round(value / baseline, 3) if baseline else None
    base = round(baseline, 2) if baseline is not None else None
    row = {"metric": name, "value": round(value, 2), "unit": unit, "baseline_value": base, "ratio": ratio}
    return {**row, "target": target, "met": met, **extra}


def write_results(metrics: list[dict[str, Any]], notes: list[str], quick: bool) -> None:
    from esl import write_table  # bench/esl.py: the one table writer

    name = "reconcile.quick" if quick else "reconcile"
    write_table(name, "Reconciliation benchmarks (bench/reconcile.py)", metrics, notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5,000 variants instead of 50,000 (about a minute)")
    parser.add_argument("--database-url", help="PostgreSQL server (default: TEST_DATABASE_URL or :5432)")
    args = parser.parse_args()
    started = time.monotonic()
    variants = 5_000 if args.quick else 50_000
    n_products = products_for(variants)
    work = Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
    server = server_url_from_args(args.database_url)
    db_url = make_database(server)
    base_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HIPOINK_", "SHOPIFY_", "DATABASE_URL", "STOREFLOW_"))
    }
    env = {
        **base_env,
        "DATABASE_URL": db_url,
        "LOG_DIRECTORY": str(work / "logs"),
        "STOREFLOW_HOME": str(work / "home"),
        "APP_ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
    }
    load = os.getloadavg()[0]
    try:
        with process(
            [sys.executable, "-m", "storeflow", "sandbox", "up", "--only", "shopify-admin", "--port-base", "0"],
            env,
            work,
        ) as sim:
            assert sim.stdout is not None
            admin_url = json.loads(sim.stdout.readline())["shopify-admin"]
            token = create_shop(admin_url, n_products, 2000.0, 100.0)
            (work / "storeflow.toml").write_text(
                f'[[esl.shops]]\nshop = "{SHOP}"\nadmin_token_env = "{TOKEN_ENV}"\n'
                f'admin_api_base_url = "{admin_url}"\n',
                encoding="utf-8",
            )
            env.update({TOKEN_ENV: token, "STOREFLOW_CONFIG": str(work / "storeflow.toml")})

            print(f"1. full (bulk), empty database: {n_products} products, {variants}+ variants", flush=True)
            initial = reconcile(env, work, "--full")
            print("2. full (bulk), in sync", flush=True)
            in_sync = reconcile(env, work, "--full")
            throttled_standard = shop_state(admin_url)["throttled"]

            print("3. full (paginated) on a Shopify Plus bucket, in sync", flush=True)
            token = create_shop(admin_url, n_products, 20_000.0, 1_000.0)
            httpx.post(
                f"{admin_url}/_sandbox/bulk", json={"shop": SHOP, "fail_next": "INTERNAL_SERVER_ERROR"}
            ).raise_for_status()
            paged = reconcile(env, work, "--full")
            throttled_plus = shop_state(admin_url)["throttled"]

            print("4. incremental after 1% of the products changed (standard bucket)", flush=True)
            token = create_shop(admin_url, n_products, 2000.0, 100.0)
            changed = max(1, n_products // 100)
            mutated = httpx.post(
                f"{admin_url}/_sandbox/mutate", json={"shop": SHOP, "change_prices": changed}, timeout=60
            ).json()
            incremental = reconcile(env, work)
            throttled_incremental = shop_state(admin_url)["throttled"]

            print("5. the same incremental on an Advanced plan bucket (4,000 points, 200/s)", flush=True)
            create_shop(admin_url, n_products, 4000.0, 200.0)
            httpx.post(
                f"{admin_url}/_sandbox/mutate", json={"shop": SHOP, "change_prices": changed}, timeout=60
            ).raise_for_status()
            advanced = reconcile(env, work)
            throttled_incremental += shop_state(admin_url)["throttled"]
        runs = [initial, in_sync, paged, incremental, advanced]
        surfaced = sum(1 for r in runs if r["failed"])
        for r in runs:
            if r["failed"]:
                print(f"FAILED: {r['error']}", file=sys.stderr)
        big = not args.quick
        metrics = [
            metric(
                "full_bulk_in_sync_wall",
                in_sync["wall"],
                "s",
                "<= 60 s (50k variants)",
                in_sync["wall"] <= 60 if big and not in_sync["failed"] else None,
                baseline=paged["wall"],  # the same full listing read page by page
                cost=in_sync.get("cost_used"),
            ),
            metric(
                "full_bulk_empty_db_wall",
                initial["wall"],
                "s",
                "<= 60 s (50k variants)",
                initial["wall"] <= 60 if big and not initial["failed"] else None,
                cost=initial.get("cost_used"),
            ),
            metric("full_bulk_cost", in_sync.get("cost_used", 0), "points", "(reported)", None),
            metric("full_paginated_plus_wall", paged["wall"], "s", "(reported: bulk is the way)", None),
            metric("full_paginated_cost", paged.get("cost_used", 0), "points", "(reported)", None),
            metric(
                "incremental_1pct_wall",
                incremental["wall"],
                "s",
                "<= 5 s",
                incremental["wall"] <= 5 and not incremental["failed"],
                cost=incremental.get("cost_used"),
            ),
            metric("incremental_1pct_cost", incremental.get("cost_used", 0), "points", "(reported)", None),
            metric(
                "incremental_1pct_advanced_wall",
                advanced["wall"],
                "s",
                "<= 5 s",
                advanced["wall"] <= 5 and not advanced["failed"],
            ),
            metric("throttled_surfaced", surfaced, "runs", "0", surfaced == 0),
            metric(
                "throttled_answers_waited_out",
                throttled_standard + throttled_plus + throttled_incremental,
                "answers",
                "(reported; paced to avoid)",
                None,
            ),
        ]
        notes = [
            f"Measured {time.strftime('%Y-%m-%d %H:%M')} on one machine ({os.cpu_count()} cores, load average "
            f"{load:.1f} at start), {'--quick' if args.quick else 'full'} run; shop of {n_products} products / "
            f"{initial.get('products_seen', '?')} listed; wall = `storeflow esl reconcile` process start to exit "
            "(includes ~1 s of Python start-up and settings).",
            f"1. empty database: {initial.get('created')} variants created and enqueued through "
            f"esl_ingest_webhook ({initial.get('enqueued')} queue items), method {initial.get('method')}, "
            f"{initial.get('requests')} Admin API requests.",
            f"2. in sync: {in_sync.get('unchanged')} unchanged, {in_sync.get('created', 0)} created, "
            f"{in_sync.get('updated', 0)} updated, {in_sync.get('deleted', 0)} deleted; "
            f"{in_sync.get('requests')} requests (run, polls, download).",
            f"3. paginated (bulk made to fail: method {paged.get('method')}): {paged.get('pages')} pages, "
            f"{paged.get('requests')} requests, cost {paged.get('cost_used')} points; at the standard plan's "
            f"100 points/s that cost alone is {paged.get('cost_used', 0) / 100:.0f} s.",
            f"4. incremental: {len(mutated.get('changed', []))} products re-priced without webhooks; "
            f"{incremental.get('products_seen')} listed since the high-water mark, {incremental.get('updated')} "
            f"variants updated, {incremental.get('pages')} pages; inside the command {incremental.get('seconds')} s, "
            f"of which {incremental.get('waited_seconds')} s waiting for the bucket (standard plan: "
            f"{incremental.get('cost_used')} points against a 2,000-point bucket refilled at 100/s). "
            f"5. the same on the Advanced plan's bucket: {advanced.get('updated')} updated, inside the command "
            f"{advanced.get('seconds')} s ({advanced.get('waited_seconds')} s waiting).",
            f"Total bench time {time.monotonic() - started:.0f} s.",
        ]
        write_results(metrics, notes, args.quick)
    finally:
        drop_database(server, db_url)


if __name__ == "__main__":
    main()
