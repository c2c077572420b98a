"""Benchmarks of the Shopify -> Hipoink pipeline (issue: spec 002), all on this machine in one run.

1. Webhook ingest: throughput and p50/p99 at 32 concurrent connections against a floor app
   (minimal FastAPI, one INSERT per request, same database, same pool settings).
2. End to end: webhook acknowledgement -> Hipoink simulator receives the product, at 100 webhooks/s.
3. Draining a 50,000-item backlog into the simulator, batched (create_multiple) vs one create per product.

Servers run as separate processes (`storeflow esl serve`, `storeflow esl worker`, `storeflow sandbox
up`); the load generator is a small keep-alive HTTP/1.1 client sending pre-signed requests.

    python bench/esl.py [--quick] [--database-url URL] [--pooler pgbouncer]

Results: bench/results/esl.json (one object per metric) and bench/results/esl.md; with ``--pooler
pgbouncer`` (every storeflow process and the floor app through PgBouncer in transaction mode, started for
the run: DATABASE_POOLER=transaction, LISTEN over DATABASE_DIRECT_URL) esl.pgbouncer.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import socket
import statistics
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
from embedded_pg import embedded_server
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SECRET = "shpss_bench_secret_0123456789abcdef"
SHOP = "bench-shop.myshopify.com"
STORE = "B01"
CONCURRENCY = 32
_CL = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")

sys.path.insert(0, str(ROOT / "src"))

from storeflow.db import connect  # noqa: E402
from storeflow.db.pool import PoolConfig, open_async_pool  # noqa: E402
from storeflow.sandbox.shopify import shopify_dumps  # noqa: E402
from storeflow.sandbox.shopify import sign_webhook as sign_body  # noqa: E402

# ---------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(args: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def product_body(i: int, price: str = "9.99", prefix: str = "BENCH") -> bytes:
    pid = 2**53 + 1_000_000 + i
    return shopify_dumps(
        {
            "id": pid,
            "title": f"Bench product {i}",
            "updated_at": "2026-01-05T10:00:00-00:00",
            "vendor": "Bench",
            "images": [{"id": pid + 7, "position": 1, "src": f"https://cdn.shopify.com/s/files/1/b/{i}.jpg"}],
            "variants": [
                {
                    "id": pid + 10**12,
                    "title": "Default Title",
                    "price": price,
                    "sku": f"SKU-{i}",
                    "barcode": f"{prefix}-{i}",
                    "inventory_item_id": pid + 2 * 10**12,
                }
            ],
        }
    )


def signed_request(path: str, body: bytes, topic: str = "products/update") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-Shopify-Topic: {topic}\r\nX-Shopify-Shop-Domain: {SHOP}\r\n"
        f"X-Shopify-Hmac-Sha256: {sign_body(SECRET, body)}\r\nX-Shopify-Webhook-Id: {uuid.uuid4()}\r\n"
        f"X-Shopify-Event-Id: {uuid.uuid4()}\r\nX-Shopify-API-Version: 2025-07\r\n\r\n"
    )
    return head.encode() + body


# ---------------------------------------------------------------- load generator


async def _connection(
    port: int, requests: Iterator[bytes], stop_at: float, measure_from: float, lat: list[float], codes: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            now = time.perf_counter()
            if now >= stop_at:
                return
            writer.write(next(requests))
            head = await reader.readuntil(b"\r\n\r\n")
            match = _CL.search(head)
            if match:
                await reader.readexactly(int(match.group(1)))
            if now >= measure_from:
                lat.append((time.perf_counter() - now) * 1000)
                codes.append(int(head[9:12]))
    finally:
        writer.close()


async def _load(port: int, requests: list[bytes], seconds: float, warmup: float, keep: bool) -> dict[str, Any]:
    it = itertools.cycle(requests)
    start = time.perf_counter()
    lat: list[float] = []
    codes: list[int] = []
    await asyncio.gather(
        *(_connection(port, it, start + warmup + seconds, start + warmup, lat, codes) for _ in range(CONCURRENCY))
    )
    ok = sum(1 for c in codes if c == 200)
    return {
        "requests": len(codes),
        "ok": ok,
        "rps": ok / seconds,
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "non_200": len(codes) - ok,
        **({"latencies": lat} if keep else {}),
    }


def load(port: int, requests: list[bytes], seconds: float, warmup: float = 1.0, keep: bool = False) -> dict[str, Any]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(_load(port, requests, seconds, warmup, keep))


async def _paced(port: int, requests: list[bytes], rate: float, connections: int) -> dict[str, Any]:
    free: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        free.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    lat: list[float] = []
    codes: list[int] = []
    start = time.perf_counter() + 0.05

    async def one(i: int, request: bytes) -> None:
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        reader, writer = await free.get()  # all connections busy: the wait counts, as a sender's would
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = _CL.search(head)
            if match:
                await reader.readexactly(int(match.group(1)))
        finally:
            free.put_nowait((reader, writer))
        lat.append((time.perf_counter() - due) * 1000)
        codes.append(int(head[9:12]))

    await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
    while not free.empty():
        free.get_nowait()[1].close()
    ok = sum(1 for c in codes if c == 200)
    return {"requests": len(codes), "ok": ok, "latencies": lat, "non_200": len(codes) - ok}


def paced_load(port: int, requests: list[bytes], rate: float, connections: int = CONCURRENCY) -> dict[str, Any]:
    """Open loop: request i is due at i / ``rate`` s, whatever the answers before it took; its latency is
    counted from when it was due (a late sender or a busy connection counts against the server)."""
    return asyncio.run(_paced(port, requests, rate, connections))


# ---------------------------------------------------------------- the floor app


def floor_server(port: int, db_url: str, pooler: str = "none") -> None:
    """A minimal FastAPI app: one INSERT per request, same pool settings as storeflow's receiver."""
    from contextlib import asynccontextmanager

    import uvicorn

    pool = open_async_pool(
        db_url, PoolConfig(pooler=pooler), name="bench-floor", min_size=2, max_size=12, autocommit=True
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await pool.open()
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/webhooks/shopify/products/update")
    async def receive(request: Request) -> JSONResponse:
        body = await request.body()
        async with pool.connection() as conn:
            cur = await conn.execute("INSERT INTO bench_floor (body) VALUES (%s) RETURNING id", (body,))
            row = await cur.fetchone()
        return JSONResponse({"ok": True, "id": row["id"] if row else None})

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ---------------------------------------------------------------- setup


def make_database(server_url: str) -> str:
    name = f"bench_esl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    from storeflow.db.connect import Database
    from storeflow.db.migrate import migrate

    db = Database(url)
    migrate(db)
    db.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bench_floor (id bigserial PRIMARY KEY, body bytea, received_at timestamptz DEFAULT now())"
        )
        conn.execute("INSERT INTO store_mappings (source_store_id, hipoink_store_code) VALUES (%s, %s)", (SHOP, STORE))
    return url


def drop_database(server_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def server_url_from_args(given: str | None, home: Path, stack: contextlib.ExitStack) -> str:
    """The given server, TEST_DATABASE_URL, :5432, else an embedded server that ``stack`` stops at the end."""
    url = given or os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        return url
    try:
        psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=2).close()
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    except psycopg.Error:
        return stack.enter_context(embedded_server(home))


def reset_queue(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "TRUNCATE sync_log, hipoink_products, sync_queue, inventory_item_map, products, webhook_inbox, bench_floor"
        )
        conn.execute("VACUUM ANALYZE")


# ---------------------------------------------------------------- the benchmarks


def merge_parts(parts: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """One server's load segments (`load(..., keep=True)`) as one result over ``seconds``."""
    lat = [x for p in parts for x in p.pop("latencies")]
    ok = sum(p["ok"] for p in parts)
    return {
        "requests": sum(p["requests"] for p in parts),
        "ok": ok,
        "rps": ok / seconds,
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "non_200": sum(p["non_200"] for p in parts),
    }


def bench_ingest(env: dict[str, str], cwd: Path, db_url: str, seconds: float) -> dict[str, Any]:
    """Floor and storeflow run side by side; the load alternates between them in short segments so that
    a change in the machine's other load during the run affects both alike."""
    segments = max(2, round(seconds / 2))
    # storeflow gets requests it has never seen in every segment (a repeat would be a cheap duplicate):
    # room for 6000 req/s over each segment and its warm-up; the floor's INSERT does not care
    per_segment = int((seconds / segments + 0.5) * 6000)
    n = per_segment * segments
    print(f"  preparing {n} signed requests ...", flush=True)
    path = "/webhooks/shopify/products/update"
    requests = [signed_request(path, product_body(i)) for i in range(n)]
    floor_port, port = free_port(), free_port()
    floor_parts: list[dict[str, Any]] = []
    our_parts: list[dict[str, Any]] = []
    floor_cmd = [sys.executable, __file__, "--floor-server", str(floor_port), env["DATABASE_URL"]]
    floor_cmd += [env.get("DATABASE_POOLER", "none")]
    our_cmd = [sys.executable, "-m", "storeflow", "esl", "serve", "--port", str(port)]
    with process(floor_cmd, env, cwd), process(our_cmd, env, cwd) as proc:
        wait_http(f"http://127.0.0.1:{floor_port}/health")
        wait_http(f"http://127.0.0.1:{port}/health")
        for i in range(segments):
            floor_parts.append(load(floor_port, requests[:per_segment], seconds / segments, warmup=0.5, keep=True))
            mine = requests[i * per_segment : (i + 1) * per_segment]
            our_parts.append(load(port, mine, seconds / segments, warmup=0.5, keep=True))
        assert proc.poll() is None
    floor, ours = merge_parts(floor_parts, seconds), merge_parts(our_parts, seconds)
    with connect(db_url) as conn:
        rows = conn.execute("SELECT outcome, count(*) AS n FROM webhook_inbox GROUP BY 1").fetchall()
    outcomes = {r["outcome"]: r["n"] for r in rows}
    print(f"  floor: {floor}\n  storeflow: {ours}  inbox outcomes: {outcomes}", flush=True)
    return {"floor": floor, "ours": ours, "outcomes": outcomes, "segments": segments}


def bench_e2e(env: dict[str, str], cwd: Path, db_url: str, hipoink: str, seconds: float) -> dict[str, Any]:
    from storeflow.sandbox.shopify import Delivery, send_deliveries

    reset_queue(db_url)
    httpx.delete(f"{hipoink}/_sandbox/products").raise_for_status()
    port = free_port()
    count = int(seconds * 100)
    deliveries = []
    for i in range(count):
        body = product_body(i, prefix="E2E")
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "products/create",
            "X-Shopify-Shop-Domain": SHOP,
            "X-Shopify-Hmac-Sha256": sign_body(SECRET, body),
            "X-Shopify-Event-Id": str(uuid.uuid4()),
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        }
        deliveries.append(Delivery("products/create", body, headers, i))
    warmup = []
    for i in range(100):
        body = product_body(10**6 + i, prefix="WARM")
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "products/create",
            "X-Shopify-Shop-Domain": SHOP,
            "X-Shopify-Hmac-Sha256": sign_body(SECRET, body),
            "X-Shopify-Event-Id": str(uuid.uuid4()),
        }
        warmup.append(Delivery("products/create", body, headers, i))
    serve = [sys.executable, "-m", "storeflow", "esl", "serve", "--port", str(port)]
    work = [sys.executable, "-m", "storeflow", "esl", "worker"]
    with process(serve, env, cwd), process(work, env, cwd) as worker:
        wait_http(f"http://127.0.0.1:{port}/health")
        time.sleep(1.0)  # the worker is listening
        # warm-up: 100 deliveries of other products, so pools, plans and connections are in use already
        asyncio.run(send_deliveries(warmup, f"http://127.0.0.1:{port}", rate=100, concurrency=16))
        time.sleep(1.0)
        result = asyncio.run(send_deliveries(deliveries, f"http://127.0.0.1:{port}", rate=100, concurrency=16))
        acked = {f"E2E-{d.product_index}": t for d, t in result.acked_at}
        deadline = time.monotonic() + 30
        while True:
            labels = httpx.get(f"{hipoink}/_sandbox/products", params={"store_code": STORE}).json()["products"]
            labels = [p for p in labels if p["pc"].startswith("E2E-")]
            if len(labels) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert worker.poll() is None
    received = {p["pc"]: p["received_at"] for p in labels}
    latencies = [(received[pc] - t) * 1000 for pc, t in acked.items() if pc in received]
    with connect(db_url) as conn:
        db_lat = [
            r["latency_ms"]
            for r in conn.execute(
                "SELECT latency_ms FROM sync_log WHERE status = 'succeeded' AND product_code LIKE 'E2E-%%'"
            ).fetchall()
        ]
    out = {
        "sent": count,
        "acked": len(acked),
        "arrived": len(latencies),
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "mean": statistics.fmean(latencies) if latencies else float("nan"),
        "db_p50": percentile(db_lat, 50),
        "db_p99": percentile(db_lat, 99),
        "rate_limit_per_s": env.get("HIPOINK_RATE_LIMIT_PER_SECOND", "10"),
    }
    print(f"  e2e: {out}", flush=True)
    return out


BACKLOG_SQL = """
WITH m AS (SELECT id, hipoink_store_code FROM store_mappings WHERE source_store_id = %(shop)s),
p AS (
    INSERT INTO products (store_mapping_id, source_store_id, source_id, source_variant_id, pc, pn, pp, pi, pim,
                          source_updated_at)
    SELECT m.id, %(shop)s, (9007199254740993 + g)::text, (9007199254740993 + 1000000000000 + g)::text,
           %(prefix)s || g, 'Backlog product ' || g, (g %% 100) || '.99', 'SKU-' || g,
           'https://cdn.shopify.com/s/files/1/b/' || g || '.jpg', now()
      FROM m, generate_series(1, %(n)s) g
    RETURNING id, store_mapping_id
)
INSERT INTO sync_queue (store_mapping_id, store_code, product_id, operation, reason)
SELECT p.store_mapping_id, %(store)s, p.id, 'upsert', 'resync' FROM p
"""


def bench_drain(env: dict[str, str], cwd: Path, db_url: str, hipoink: str, n: int, mode: str) -> dict[str, Any]:
    reset_queue(db_url)
    httpx.delete(f"{hipoink}/_sandbox/products").raise_for_status()
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(BACKLOG_SQL, {"shop": SHOP, "store": STORE, "n": n, "prefix": f"{mode.upper()}-"})
        conn.execute("VACUUM ANALYZE")
    cmd = [sys.executable, "-m", "storeflow", "esl", "worker", "--drain", "--mode", mode]
    started = time.monotonic()
    with process(cmd, env, cwd) as proc:
        out, err = proc.communicate(timeout=1800)
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed: {err[-2000:]}")
    with connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'succeeded') AS done,"
            " extract(epoch FROM max(finished_at) - min(claimed_at)) AS seconds FROM sync_queue"
        ).fetchone()
    assert row is not None
    done, seconds = row["done"], row["seconds"]
    arrived = httpx.get(f"{hipoink}/_sandbox/state").json()["stores"].get(STORE, 0)
    result = {
        "mode": mode,
        "items": n,
        "succeeded": done,
        "arrived": arrived,
        "seconds": float(seconds),
        "wall_seconds": wall,
        "products_per_s": done / float(seconds),
        "worker": json.loads(out.strip().splitlines()[-1]),
    }
    print(f"  drain: {result}", flush=True)
    return result


# ---------------------------------------------------------------- report


def metric(name: str, value: float, unit: str, baseline: float | None, target: str, met: bool | None) -> dict[str, Any]:
    ratio = value / baseline if baseline else None
    return {
        "metric": name,
        "value": round(value, 2),
        "unit": unit,
        "baseline_value": round(baseline, 2) if baseline is not None else None,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "target": target,
        "met": met,
    }


def report(
    ingest: dict[str, Any], e2e: dict[str, Any], e2e_fast: dict[str, Any], batch: dict[str, Any], single: dict[str, Any]
) -> list[Any]:
    floor, ours = ingest["floor"], ingest["ours"]
    speedup = batch["products_per_s"] / single["products_per_s"]
    metrics = [
        metric(
            "ingest_throughput", ours["rps"], "req/s", floor["rps"], ">= 0.8x floor", ours["rps"] >= 0.8 * floor["rps"]
        ),
        metric("ingest_p50_latency", ours["p50"], "ms", floor["p50"], "(reported)", None),
        metric("ingest_p99_latency", ours["p99"], "ms", floor["p99"], "<= 50 ms", ours["p99"] <= 50),
        metric("e2e_latency_p50", e2e_fast["p50"], "ms", 2500.0, "<= 50 ms", e2e_fast["p50"] <= 50),
        metric("e2e_latency_p99", e2e_fast["p99"], "ms", 2500.0, "<= 250 ms", e2e_fast["p99"] <= 250),
        # at 10 requests/s a product waits on average 50 ms for the next send slot: pacing, not pipeline
        metric("e2e_latency_p50_rate10", e2e["p50"], "ms", 2500.0, "(reported: paced)", None),
        metric("e2e_latency_p99_rate10", e2e["p99"], "ms", 2500.0, "<= 250 ms", e2e["p99"] <= 250),
        metric(
            "drain_batched_throughput",
            batch["products_per_s"],
            "products/s",
            single["products_per_s"],
            ">= 5000/s and >= 10x per-product",
            batch["products_per_s"] >= 5000 and speedup >= 10,
        ),
        metric("drain_per_product_throughput", single["products_per_s"], "products/s", None, "(baseline)", None),
    ]
    return metrics


def write_results(metrics: list[dict[str, Any]], notes: list[str]) -> None:
    write_table("esl", "ESL benchmarks (bench/esl.py)", metrics, notes)


def write_table(name: str, title: str, metrics: list[dict[str, Any]], notes: list[str]) -> None:
    """bench/results/<name>.json (the metrics) and <name>.md (them as a table, then the notes)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(metrics, indent=2) + "\n")
    lines = [
        f"# {title}",
        "",
        "| metric | value | unit | baseline | ratio | target | met |",
        "| --- | ---: | --- | ---: | ---: | --- | --- |",
    ]
    for m in metrics:
        met = {True: "yes", False: "**no**", None: "-"}[m["met"]]
        baseline = m["baseline_value"] if m["baseline_value"] is not None else "-"
        ratio = m["ratio"] if m["ratio"] is not None else "-"
        lines.append(f"| {m['metric']} | {m['value']} | {m['unit']} | {baseline} | {ratio} | {m['target']} | {met} |")
    lines += ["", *notes, ""]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    with contextlib.ExitStack() as stack:  # stops an embedded server started for the run
        run(stack)


def run(stack: contextlib.ExitStack) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs (under 3 minutes)")
    parser.add_argument("--database-url", help="PostgreSQL server (default: TEST_DATABASE_URL, :5432, embedded)")
    parser.add_argument(
        "--pooler", choices=["none", "pgbouncer"], default="none", help="reach PostgreSQL through PgBouncer"
    )
    parser.add_argument("--floor-server", nargs=3, metavar=("PORT", "DB_URL", "POOLER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_server:
        floor_server(int(args.floor_server[0]), args.floor_server[1], args.floor_server[2])
        return
    started = time.monotonic()
    ingest_s, e2e_s = (8.0, 8.0) if args.quick else (20.0, 20.0)
    backlog, single_n = 50_000, (3_000 if args.quick else 10_000)
    work = Path(tempfile.mkdtemp(prefix="bench-esl-"))
    server = server_url_from_args(args.database_url, work / "home", stack)
    db_url = make_database(server)
    base_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HIPOINK_", "SHOPIFY_", "DATABASE_URL", "STOREFLOW_"))
    }
    env = {
        **base_env,
        "DATABASE_URL": db_url,
        "LOG_DIRECTORY": str(work / "logs"),
        "STOREFLOW_HOME": str(work / "home"),
        "SHOPIFY_WEBHOOK_SECRET": SECRET,
        "APP_ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
    }
    pooled = ""
    if args.pooler == "pgbouncer":
        sys.path.insert(0, str(ROOT))
        from tests.integration.pgbouncer import running_pgbouncer

        bouncer = stack.enter_context(running_pgbouncer(server, pool_size=20))
        env.update(
            {"DATABASE_URL": bouncer.url(db_url), "DATABASE_POOLER": "transaction", "DATABASE_DIRECT_URL": db_url}
        )
        pooled = (
            "; every storeflow process and the floor app through PgBouncer 1.18 in transaction mode "
            "(default_pool_size 20, DATABASE_POOLER=transaction, LISTEN over DATABASE_DIRECT_URL)"
        )
    notes = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on one machine ({os.cpu_count()} cores), "
        f"{'--quick' if args.quick else 'full'} run, PostgreSQL at "
        f"{psycopg.conninfo.conninfo_to_dict(server).get('host')}{pooled}; load average at start "
        f"{os.getloadavg()[0]:.1f}.",
    ]
    try:
        print("1. webhook ingest", flush=True)
        ingest = bench_ingest(env, work, db_url, ingest_s)
        with process(
            [sys.executable, "-m", "storeflow", "sandbox", "up", "--only", "hipoink", "--port-base", "0"], env, work
        ) as sim:
            assert sim.stdout is not None
            hipoink = json.loads(sim.stdout.readline())["hipoink"]
            cfg = httpx.get(f"{hipoink}/_sandbox/state").json()
            assert cfg["client_id"] == "default"
            from storeflow.sandbox.hipoink import sandbox_sign

            env.update(
                {
                    "HIPOINK_API_BASE_URL": hipoink,
                    "HIPOINK_CLIENT_ID": "default",
                    "HIPOINK_API_SECRET": sandbox_sign(0),
                }
            )
            print("2. end-to-end latency at 100 webhooks/s (default worker settings)", flush=True)
            e2e = bench_e2e(env, work, db_url, hipoink, e2e_s)
            print("   again with HIPOINK_RATE_LIMIT_PER_SECOND=100", flush=True)
            e2e_fast = bench_e2e({**env, "HIPOINK_RATE_LIMIT_PER_SECOND": "100"}, work, db_url, hipoink, e2e_s)
            drain_env = {**env, "HIPOINK_BATCH_SIZE": "500", "HIPOINK_RATE_LIMIT_PER_SECOND": "100000"}
            print(f"3. drain {backlog} items, batched", flush=True)
            batch = bench_drain(drain_env, work, db_url, hipoink, backlog, "batch")
            print(f"   drain {single_n} items, one create per product", flush=True)
            single = bench_drain(drain_env, work, db_url, hipoink, single_n, "single")
        notes += [
            f"1. ingest: {CONCURRENCY} keep-alive connections, {ingest_s:.0f} s against each app in "
            f"{ingest['segments']} alternating segments (0.5 s warm-up before each); every "
            "request a distinct signed products/update (one product, one queue item). Floor: minimal FastAPI, one "
            f"INSERT per request. storeflow: {ingest['ours']['requests']} requests measured, inbox outcomes "
            f"{ingest['outcomes']}.",
            f"2. e2e: {e2e_fast['sent']} products/create at 100/s, `storeflow esl worker` with "
            f"HIPOINK_RATE_LIMIT_PER_SECOND={e2e_fast['rate_limit_per_s']} (Hipoink publishes no rate limit; the "
            "setting is ours) and the default batch of 200; latency = simulator receive time - client's receipt of "
            f"the 200, after 100 warm-up deliveries; {e2e_fast['arrived']} arrived. Inside the database "
            f"(sync_log.latency_ms, commit -> Hipoink reply): p50 {e2e_fast['db_p50']:.1f} ms, p99 "
            f"{e2e_fast['db_p99']:.1f} ms. Baseline: the spec's 5 s polling averages >= 2.5 s. The *_rate10 rows: "
            f"the same at the spec's default HIPOINK_RATE_LIMIT_PER_SECOND={e2e['rate_limit_per_s']} ({e2e['arrived']} "
            "arrived): one request per 100 ms means a product arriving at a random moment waits 50 ms on average "
            "for the next send slot, so its p50 is bounded by the pacing, not by the pipeline.",
            f"3. drain: `storeflow esl worker --drain`, batch 500, one lane, rate limit lifted; throughput = items / "
            f"(last finish - first claim). Batched: {batch['items']} items in {batch['seconds']:.1f} s "
            f"({batch['worker']['requests']} requests). Per product: {single['items']} items in "
            f"{single['seconds']:.1f} s.",
            f"Total bench time {time.monotonic() - started:.0f} s.",
        ]
        name = "esl" if args.pooler == "none" else f"esl.{args.pooler}"
        title = "ESL benchmarks (bench/esl.py" + ("" if args.pooler == "none" else f" --pooler {args.pooler}") + ")"
        write_table(name, title, report(ingest, e2e, e2e_fast, batch, single), notes)
    finally:
        drop_database(server, db_url)


if __name__ == "__main__":
    main()
