"""Scale-out benchmarks (issue 14): several processes on one PostgreSQL.

1. Ingest throughput and p99 with 1 vs 2 receiver processes (`storeflow serve --workers 1|2`), directly
   and through PgBouncer in transaction mode (bench/scale_out.py).
2. Rate limits that hold across processes (RATE_LIMIT_SCOPE=global), each against its per-process
   baseline (RATE_LIMIT_SCOPE=process) in the same run:
   a. 3 `storeflow esl worker` processes drain one backlog with HIPOINK_RATE_LIMIT_PER_SECOND=20; the
      Hipoink simulator's arrivals: rate within 10% of 20/s, no 1 s window above 110%.
   b. 2 Hallmark extractions of one account (one thread, client, throttle and database connection
      each) at RATE_LIMIT_DETAIL_SECONDS=0.1 against the simulator: <= 10.5 requests/s, zero 429s.
3. Worker drain with 1, 2, 3 `storeflow esl worker` processes on a 50k backlog, no rate limit: no item
   sent twice (the Hipoink simulator's per-product receive counts), throughput (bench/scale_out.py).

    python bench/scale.py [--quick] [--database-url URL]

Results: bench/results/scale.json (one object per metric) and bench/results/scale.md. Every process
and server it starts is stopped when it ends (an embedded PostgreSQL too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from esl import (
    BACKLOG_SQL,
    SHOP,
    STORE,
    drop_database,
    make_database,
    metric,
    process,
    reset_queue,
    server_url_from_args,
    write_table,
)
from scale_costs import unit_costs
from scale_out import receivers, worker_drain

from storeflow.db.pool import PoolConfig
from storeflow.hallmark import aura
from storeflow.hallmark.auth import Authenticator
from storeflow.hallmark.client import AuraClient, HallmarkClientConfig, RequestFailedError
from storeflow.http.quota import peak_in_window
from storeflow.http.shared import account_throttle
from storeflow.logs import setup_logging
from storeflow.sandbox.hipoink import sandbox_sign
from storeflow.sandbox.host import SandboxHost
from storeflow.settings import load_settings

Experiment = Callable[["Run"], list[dict[str, Any]]]
BATCH = 5  # 2a: products per create_multiple: many small requests, so the limit is what paces the drain
INTERVAL = 0.1  # 2b: RATE_LIMIT_DETAIL_SECONDS


class Run:
    """What every experiment shares: the database, the environment for child processes, the notes."""

    def __init__(self, quick: bool, server: str, db_url: str, work: Path) -> None:
        self.quick = quick
        self.server = server
        self.db_url = db_url
        self.work = work
        self.notes: list[str] = []
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("HIPOINK_", "SHOPIFY_", "DATABASE_URL", "STOREFLOW_", "RATE_LIMIT_"))
        }
        self.env = {
            **base,
            "DATABASE_URL": db_url,
            "LOG_DIRECTORY": str(work / "logs"),
            "STOREFLOW_HOME": str(work / "home"),
            "APP_ENVIRONMENT": "test",
            "LOG_LEVEL": "WARNING",
        }


def arrival_rate(times: list[float]) -> dict[str, Any]:
    """Requests, seconds from first to last arrival, rate over them, most arrivals in any 1 s window."""
    span = times[-1] - times[0]
    return {"requests": len(times), "seconds": span, "rate": (len(times) - 1) / span, "peak_1s": peak_in_window(times)}


# ---------------------------------------------------------------- 2a. Hipoink limit across 3 workers


def drain_with_workers(run: Run, hipoink: str, scope: str, workers: int, rate: float, items: int) -> dict[str, Any]:
    reset_queue(run.db_url)
    with psycopg.connect(run.db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE rate_limits")
        conn.execute(BACKLOG_SQL, {"shop": SHOP, "store": STORE, "n": items, "prefix": f"{scope.upper()}-"})
        conn.execute("VACUUM ANALYZE")
    httpx.delete(f"{hipoink}/_sandbox/products").raise_for_status()
    httpx.delete(f"{hipoink}/_sandbox/arrivals").raise_for_status()
    env = {
        **run.env,
        "HIPOINK_API_BASE_URL": hipoink,
        "HIPOINK_CLIENT_ID": "default",
        "HIPOINK_API_SECRET": sandbox_sign(0),
        "HIPOINK_RATE_LIMIT_PER_SECOND": str(rate),
        "HIPOINK_BATCH_SIZE": str(BATCH),
        "RATE_LIMIT_SCOPE": scope,
    }
    cmd = [sys.executable, "-m", "storeflow", "esl", "worker", "--drain", "--concurrency", "2"]
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(process(cmd, env, run.work)) for _ in range(workers)]
        outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"worker failed ({scope}): {err[-2000:]}")
    times = sorted(httpx.get(f"{hipoink}/_sandbox/arrivals").json()["arrivals"])
    with psycopg.connect(run.db_url) as conn:
        row = conn.execute("SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*) FROM sync_queue").fetchone()
    assert row is not None
    result = {
        "scope": scope,
        **arrival_rate(times),
        "succeeded": row[0],
        "items": row[1],
        "workers": [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs],
    }
    print(
        f"  {scope}: {result['requests']} requests in {result['seconds']:.1f} s = {result['rate']:.1f}/s,"
        f" peak {result['peak_1s']}/1 s"
    )
    return result


def hipoink_limit(run: Run) -> list[dict[str, Any]]:
    rate, workers = 20.0, 3
    seconds = 12 if run.quick else 30
    items = int(rate * seconds * BATCH)
    with process(
        [sys.executable, "-m", "storeflow", "sandbox", "up", "--only", "hipoink", "--port-base", "0"],
        run.env,
        run.work,
    ) as sim:
        assert sim.stdout is not None
        hipoink = json.loads(sim.stdout.readline())["hipoink"]
        print(f"2a. {workers} workers, {items} items, HIPOINK_RATE_LIMIT_PER_SECOND={rate:g}", flush=True)
        alone = drain_with_workers(run, hipoink, "process", workers, rate, items)
        shared = drain_with_workers(run, hipoink, "global", workers, rate, items)
    within = abs(shared["rate"] / rate - 1) <= 0.10
    peak_ok = shared["peak_1s"] <= 1.10 * rate
    run.notes.append(
        f"2a. {workers} `storeflow esl worker --drain --concurrency 2` processes, HIPOINK_BATCH_SIZE={BATCH}, "
        f"{items} queued items each run; rate = (arrivals - 1) / (last - first arrival) at the Hipoink simulator "
        f"(`/_sandbox/arrivals`), peak = most arrivals in any 1 s window. Global: {shared['requests']} requests in "
        f"{shared['seconds']:.1f} s, {shared['succeeded']}/{shared['items']} items sent. Baseline (process scope, "
        f"each worker paces itself alone): {alone['requests']} requests in {alone['seconds']:.1f} s."
    )
    return [
        metric(
            "hipoink_rate_3_workers_global",
            shared["rate"],
            "req/s",
            alone["rate"],
            "within 10% of 20/s",
            within,
        ),
        metric(
            "hipoink_peak_1s_3_workers_global",
            shared["peak_1s"],
            "req/1 s",
            float(alone["peak_1s"]),
            "<= 22 (110% of 20)",
            peak_ok,
        ),
        metric("hipoink_rate_3_workers_process_scope", alone["rate"], "req/s", rate, "(baseline: ~3x)", None),
    ]


# ---------------------------------------------------------------- 2b. Hallmark pacing across 2 extractions


def extract_concurrently(run: Run, scope: str, per_extraction: int, portal_limit: float) -> dict[str, Any]:
    host = SandboxHost(["hallmark"], port_base=0, seed=3)
    host.start_in_thread()
    try:
        sim: Any = host.sim("hallmark")
        sim.rate_limit_interval = portal_limit  # seconds per request and session (0: no limit)
        name = f"{scope}-{portal_limit:g}"
        config = run.work / f"sb-{name}" / "storeflow.toml"
        host.write_config(config)
        env = {
            **run.env,
            "SESSION_FILE": str(run.work / f"session-{name}.json"),
            "RATE_LIMIT_DETAIL_SECONDS": str(INTERVAL),
            "RATE_LIMIT_JITTER_SECONDS": "0",
            "BREAK_AFTER_REQUESTS": "0",
            "RATE_LIMIT_SCOPE": scope,
        }
        settings = load_settings(config, env=env)
        orders = sorted(sim.orders)
        asyncio.run(Authenticator(settings).session())  # one login; both extractions reuse the saved session
        failures: list[str] = []

        def extraction(n: int) -> None:
            async def fetch() -> None:
                throttle = account_throttle(settings, run.db_url, PoolConfig())
                async with httpx.AsyncClient() as http:
                    config = HallmarkClientConfig.from_settings(settings)
                    client = AuraClient(config, http, Authenticator(settings), throttle)
                    await client.connect()
                    ready.wait()
                    for order_id in orders[n * per_extraction : (n + 1) * per_extraction]:
                        try:
                            await client.call(aura.order_detail(order_id))
                        except RequestFailedError as exc:
                            failures.append(str(exc))
                await throttle.aclose()

            asyncio.run(fetch())

        ready = threading.Event()
        threads = [threading.Thread(target=extraction, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # both connected and waiting
        sim.arrivals.clear()
        limited_before = sim.counters.rate_limited
        ready.set()
        for t in threads:
            t.join()
        times = sorted(sim.arrivals)
        limited = sim.counters.rate_limited - limited_before
    finally:
        host.stop()
    result = {
        "scope": scope,
        **arrival_rate(times),
        "rate_limited": limited,
        "failed": len(failures),
    }
    print(
        f"  {name}: {result['requests']} requests in {result['seconds']:.1f} s = {result['rate']:.2f}/s,"
        f" {limited} x 429",
        flush=True,
    )
    return result


def hallmark_limit(run: Run) -> list[dict[str, Any]]:
    per = 60 if run.quick else 150
    print(f"2b. 2 Hallmark extractions of one account, {per} orders each, RATE_LIMIT_DETAIL_SECONDS={INTERVAL}")
    load = extract_concurrently(run, "process", per, 0.0)  # the load two extractions put on the account
    alone = extract_concurrently(run, "process", per, INTERVAL)  # ... and what the portal answers to it
    shared = extract_concurrently(run, "global", per, INTERVAL)
    run.notes.append(
        f"2b. two extractions (a thread each: own event loop, AuraClient, throttle and database connection) "
        f"fetch {per} order details each with one portal account and session, RATE_LIMIT_DETAIL_SECONDS="
        f"{INTERVAL}, no jitter, no breaks; the simulator limits each session to one request per {INTERVAL} s "
        f"(burst 2). Requests = every arrival at the simulator while both run, 429s included. Global: "
        f"{shared['requests']} requests in {shared['seconds']:.1f} s. Baselines (process scope, each extraction "
        f"paces itself alone): with the portal's limit lifted {load['requests']} requests in "
        f"{load['seconds']:.1f} s (the rate row's baseline); with it, {alone['requests']} requests in "
        f"{alone['seconds']:.1f} s, {alone['rate_limited']} answered 429 (the 429 row's baseline), "
        f"{alone['failed']} calls failed after their retries."
    )
    return [
        metric(
            "hallmark_rate_2_extractions_global",
            shared["rate"],
            "req/s",
            load["rate"],
            "<= 10.5/s",
            shared["rate"] <= 10.5,
        ),
        metric(
            "hallmark_429_2_extractions_global",
            shared["rate_limited"],
            "count",
            float(alone["rate_limited"]),
            "0",
            shared["rate_limited"] == 0 and shared["failed"] == 0,
        ),
    ]


# ---------------------------------------------------------------- report and main

# issue 14's experiments in order
EXPERIMENTS: dict[str, Experiment] = {
    "receivers": receivers,
    "hipoink-limit": hipoink_limit,
    "hallmark-limit": hallmark_limit,
    "worker-drain": worker_drain,
    "costs": unit_costs,  # unit costs for docs/capacity.md (bench/scale_costs.py)
}


def write_results(metrics: list[dict[str, Any]], notes: list[str], name: str = "scale") -> None:
    """bench/results/scale.* (scale.partial.* for a run of some experiments only, `--only`)."""
    write_table(name, "Scale-out benchmarks (bench/scale.py)", metrics, notes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs (under 5 minutes)")
    parser.add_argument("--database-url", help="PostgreSQL server (default: TEST_DATABASE_URL, :5432, embedded)")
    parser.add_argument("--only", action="append", choices=sorted(EXPERIMENTS), help="run only these experiments")
    args = parser.parse_args()
    started = time.monotonic()
    load = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    setup_logging(work / "logs", "WARNING", console_level="ERROR")  # the baselines' 429 warnings go to the log
    metrics: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:  # stops an embedded server started for the run
        server = server_url_from_args(args.database_url, work / "home", stack)
        db_url = make_database(server)
        run = Run(args.quick, server, db_url, work)
        run.notes.append(
            f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on one machine ({os.cpu_count()} cores), "
            f"{'--quick' if args.quick else 'full'} run; load average at start {load[0]:.1f} "
            f"(1 min) / {load[1]:.1f} (5 min): the machine is shared with other work."
        )
        try:
            for name, experiment in EXPERIMENTS.items():
                if not args.only or name in args.only:
                    metrics += experiment(run)
        finally:
            drop_database(server, db_url)
    run.notes.append(f"Total bench time {time.monotonic() - started:.0f} s.")
    write_results(metrics, run.notes, "scale.partial" if args.only else "scale")
    return 0 if all(m["met"] is not False for m in metrics) else 1


if __name__ == "__main__":
    sys.exit(main())
