"""bench/scale.py items 1 and 3: many receiver processes (direct and through PgBouncer), many workers.

1. `storeflow serve --workers 1` and `--workers 2`, each on DATABASE_URL directly and through PgBouncer
   in transaction mode (DATABASE_POOLER=transaction, DATABASE_DIRECT_URL for LISTEN): the four servers
   run side by side and the load alternates between them in short segments, so a change in the
   machine's other load affects all four alike. Targets: 2 processes >= 1.0x one process, p99 <= 50 ms,
   PgBouncer >= 0.85x direct.
3. 1, 2 and 3 `storeflow esl worker --drain` processes on a 50,000-item backlog with no rate limit: the
   Hipoink simulator's per-product receive counts show no product sent twice; throughput reported.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import psycopg
from esl import (
    BACKLOG_SQL,
    CONCURRENCY,
    SECRET,
    SHOP,
    STORE,
    free_port,
    load,
    merge_parts,
    metric,
    paced_load,
    percentile,
    process,
    product_body,
    reset_queue,
    signed_request,
    wait_http,
)

from storeflow.sandbox.hipoink import sandbox_sign

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.pgbouncer import Bouncer, running_pgbouncer  # noqa: E402

if TYPE_CHECKING:
    from scale import Run

P99_TARGET_MS = 50.0
PACED_RATE = 1000.0  # 1: webhooks/s of the paced round (docs/capacity.md's first sustained level)
WARM_SECONDS = 1.0  # 1: load on each receiver before the ANALYZE that precedes the measured rounds


def analyze(db_url: str) -> None:
    """What autovacuum does within a minute of a table's growth, on this machine's server that runs
    without it (CI's conf.d/90-ci.conf): refresh the statistics, which also makes every session replan.

    PL/pgSQL plans a statement once per session and keeps that plan until the table's next ANALYZE. A
    receiver whose first webhooks went to the inbox the benchmark had just emptied (and analyzed empty)
    keeps sequential scans for the duplicate checks: measured 250-890 webhooks/s and p99 0.2-3.3 s at
    150k inbox rows, against 1,700-2,800/s and p99 20-65 ms for the receivers that came later.
    """
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def pooled_env(run: Run, bouncer: Bouncer) -> dict[str, str]:
    """The environment of a storeflow process that reaches the database through ``bouncer``."""
    return {
        **run.env,
        "DATABASE_URL": bouncer.url(run.db_url),
        "DATABASE_POOLER": "transaction",
        "DATABASE_DIRECT_URL": run.db_url,
    }


@contextlib.contextmanager
def receiver(run: Run, env: dict[str, str], workers: int) -> Iterator[int]:
    """`storeflow serve --workers N` on a free port (stopped with SIGTERM at the end); yields the port."""
    port = free_port()
    cmd = [sys.executable, "-m", "storeflow", "serve", "--port", str(port), "--workers", str(workers)]
    with process(cmd, {**env, "SHOPIFY_WEBHOOK_SECRET": SECRET}, run.work) as proc:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=120)
        yield port
        if proc.poll() is not None:
            raise RuntimeError(f"storeflow serve --workers {workers} exited ({proc.returncode})")


def receivers(run: Run) -> list[dict[str, Any]]:
    seconds = 6.0 if run.quick else 16.0
    segments = 4
    room = 3000  # req/s each segment's distinct requests allow for (a repeat would be a cheap duplicate)
    per_segment = int((seconds / segments + 0.5) * room)
    names = ["1_direct", "2_direct", "1_pgbouncer", "2_pgbouncer"]
    print(f"1. receivers: 1 vs 2 processes, direct and through PgBouncer, {seconds:g} s each", flush=True)
    path = "/webhooks/shopify/products/update"
    warm_each = int(WARM_SECONDS * room)
    paced_each = int(PACED_RATE * seconds / segments)
    total = (per_segment * segments + warm_each + paced_each) * len(names)
    print(f"  preparing {total} signed requests ...", flush=True)
    requests = [signed_request(path, product_body(i)) for i in range(total)]
    reset_queue(run.db_url)
    parts: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with contextlib.ExitStack() as stack:
        bouncer = stack.enter_context(running_pgbouncer(run.server, pool_size=20))
        ports = {
            "1_direct": stack.enter_context(receiver(run, run.env, 1)),
            "2_direct": stack.enter_context(receiver(run, run.env, 2)),
            "1_pgbouncer": stack.enter_context(receiver(run, pooled_env(run, bouncer), 1)),
            "2_pgbouncer": stack.enter_context(receiver(run, pooled_env(run, bouncer), 2)),
        }
        warm = iter(range(len(requests) - warm_each * len(names), len(requests), warm_each))
        for name in names:
            start = next(warm)
            load(ports[name], requests[start : start + warm_each], WARM_SECONDS, warmup=0.0)
        analyze(run.db_url)
        chunk = iter(range(0, len(requests), per_segment))
        for segment in range(segments):
            for name in names[segment % 4 :] + names[: segment % 4]:  # each leads in turn: no order bias
                start = next(chunk)
                mine = requests[start : start + per_segment]
                parts[name].append(load(ports[name], mine, seconds / segments, warmup=0.5, keep=True))
        paced: dict[str, dict[str, Any]] = {}
        for k, name in enumerate(names):  # the requests after the rounds' and before the warm-up's
            start = per_segment * segments * len(names) + k * paced_each
            paced[name] = paced_load(ports[name], requests[start : start + paced_each], PACED_RATE)
    results = {name: merge_parts(parts[name], seconds) for name in names}
    with psycopg.connect(run.db_url) as conn:
        outcomes = dict(conn.execute("SELECT outcome, count(*) FROM webhook_inbox GROUP BY 1").fetchall())
    for name in names:
        r = results[name]
        print(f"  {name}: {r['rps']:.0f} req/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, {r['non_200']} non-200")
    for name in names:
        r = paced[name]
        r["p50"], r["p99"] = percentile(r["latencies"], 50), percentile(r["latencies"], 99)
        print(f"  {name} paced at {PACED_RATE:.0f}/s: p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms", flush=True)
    one, two = results["1_direct"], results["2_direct"]
    one_b, two_b = results["1_pgbouncer"], results["2_pgbouncer"]
    run.notes.append(
        f"1. receivers: `storeflow serve --workers 1|2`, directly and through PgBouncer 1.18 (transaction mode, "
        f"default_pool_size 20; DATABASE_POOLER=transaction, LISTEN over DATABASE_DIRECT_URL); the four run side "
        f"by side and the load ({CONCURRENCY} keep-alive connections, every request a distinct signed "
        f"products/update) alternates between them in {segments} rounds of {seconds / segments:.1f} s per server "
        f"(0.5 s warm-up each, a different server first in each round), {seconds:g} s per server in all. "
        f"Inbox outcomes {outcomes}; non-200 answers: "
        + ", ".join(f"{n} {results[n]['non_200'] + paced[n]['non_200']}" for n in names)
        + ". The p99 rows are at full speed (each connection sends its next request when answered); the paced "
        f"rows (informative) are a round after them at {PACED_RATE:.0f} webhooks/s open loop, "
        f"{paced_each / PACED_RATE:g} s per server, each request due at its time whatever the answers before it "
        f"took and its latency counted from then. Before the rounds each server had {WARM_SECONDS:g} s of load, "
        "then ANALYZE (see `analyze`: this machine's PostgreSQL runs without autovacuum). The load generator, "
        f"PostgreSQL, PgBouncer and the receivers share the machine's {os.cpu_count()} "
        "cores: a second receiver process adds capacity only while a core is idle, so on 2 cores the 2-process "
        "rows mostly show that coordination costs nothing (the target is >= 1.0x, not 2x); on a machine loaded "
        "by other work more processes also win a larger share of the CPU, which flatters the 2-process rows."
    )
    return [
        metric(
            "ingest_rps_2_receivers_direct",
            two["rps"],
            "req/s",
            one["rps"],
            ">= 1.0x 1 process",
            two["rps"] >= one["rps"],
        ),
        metric("ingest_rps_1_receiver_direct", one["rps"], "req/s", None, "(baseline)", None),
        metric(
            "ingest_rps_2_receivers_pgbouncer",
            two_b["rps"],
            "req/s",
            two["rps"],
            ">= 0.85x direct",
            two_b["rps"] >= 0.85 * two["rps"],
        ),
        metric(
            "ingest_rps_1_receiver_pgbouncer",
            one_b["rps"],
            "req/s",
            one["rps"],
            ">= 0.85x direct",
            one_b["rps"] >= 0.85 * one["rps"],
        ),
        *(
            metric(
                f"ingest_p99_{_label(name)}",
                results[name]["p99"],
                "ms",
                None,
                f"<= {P99_TARGET_MS:g} ms",
                results[name]["p99"] <= P99_TARGET_MS,
            )
            for name in names
        ),
        *(
            metric(
                f"ingest_p99_paced_{_label(name)}",
                paced[name]["p99"],
                "ms",
                None,
                f"(informative: open loop at {PACED_RATE:.0f}/s)",
                None,
            )
            for name in names
        ),
    ]


def _label(name: str) -> str:
    """1_direct -> 1_receiver_direct, 2_pgbouncer -> 2_receivers_pgbouncer."""
    count, path = name.split("_", 1)
    return f"{count}_receiver{'s' if count != '1' else ''}_{path}"


# ---------------------------------------------------------------- 3. drain with 1, 2, 3 workers


def drain(run: Run, hipoink: str, workers: int, items: int) -> dict[str, Any]:
    reset_queue(run.db_url)
    with psycopg.connect(run.db_url, autocommit=True) as conn:
        conn.execute(BACKLOG_SQL, {"shop": SHOP, "store": STORE, "n": items, "prefix": f"W{workers}-"})
        conn.execute("VACUUM ANALYZE")
    httpx.delete(f"{hipoink}/_sandbox/products").raise_for_status()
    env = {
        **run.env,
        "HIPOINK_API_BASE_URL": hipoink,
        "HIPOINK_CLIENT_ID": "default",
        "HIPOINK_API_SECRET": sandbox_sign(0),
        "HIPOINK_BATCH_SIZE": "500",
        "HIPOINK_RATE_LIMIT_PER_SECOND": "100000",
        "RATE_LIMIT_SCOPE": "process",  # no limit: nothing to coordinate
    }
    cmd = [sys.executable, "-m", "storeflow", "esl", "worker", "--drain"]
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(process(cmd, env, run.work)) for _ in range(workers)]
        outputs = [p.communicate(timeout=900) for p in procs]
    wall = time.monotonic() - started
    for p, (_, err) in zip(procs, outputs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"worker failed ({workers} workers): {err[-2000:]}")
    with psycopg.connect(run.db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'succeeded'),"
            " extract(epoch FROM max(finished_at) - min(claimed_at)) FROM sync_queue"
        ).fetchone()
    assert row is not None
    labels = httpx.get(f"{hipoink}/_sandbox/products", params={"store_code": STORE}, timeout=60).json()["products"]
    updates = [p["updates"] for p in labels]
    stats = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    result = {
        "workers": workers,
        "items": items,
        "succeeded": row[0],
        "seconds": float(row[1]),
        "wall_seconds": wall,
        "per_s": row[0] / float(row[1]),
        "arrived": len(labels),
        "sent_twice": sum(1 for u in updates if u > 1),
        "claimed": [s.get("claimed") for s in stats],
    }
    print(
        f"  {workers} worker(s): {result['succeeded']} items in {result['seconds']:.1f} s = {result['per_s']:.0f}/s,"
        f" {result['arrived']} labels, {result['sent_twice']} sent twice, claimed {result['claimed']}",
        flush=True,
    )
    return result


def worker_drain(run: Run) -> list[dict[str, Any]]:
    items = 50_000
    print(f"3. drain {items} items with 1, 2, 3 `storeflow esl worker --drain` processes, no rate limit")
    with process(
        [sys.executable, "-m", "storeflow", "sandbox", "up", "--only", "hipoink", "--port-base", "0"],
        run.env,
        run.work,
    ) as sim:
        assert sim.stdout is not None
        hipoink = json.loads(sim.stdout.readline())["hipoink"]
        results = {n: drain(run, hipoink, n, items) for n in (1, 2, 3)}
    one = results[1]
    run.notes.append(
        f"3. drain: {items} queued items, `storeflow esl worker --drain` x 1, 2, 3 (one lane each, "
        "HIPOINK_BATCH_SIZE=500, HIPOINK_RATE_LIMIT_PER_SECOND=100000 with RATE_LIMIT_SCOPE=process: no limit), "
        "one Hipoink simulator process; throughput = succeeded items / (last finish - first claim); "
        "sent twice = products the simulator received more than once (its per-product `updates` count). "
        + "; ".join(
            f"{n} worker(s): {r['succeeded']}/{r['items']} succeeded in {r['seconds']:.1f} s, {r['arrived']} "
            f"labels, claims per worker {r['claimed']}"
            for n, r in results.items()
        )
        + ". The simulator and PostgreSQL share the same cores as the workers."
    )
    rows = []
    for n, r in results.items():
        rows.append(
            metric(
                f"drain_{n}_workers_throughput",
                r["per_s"],
                "items/s",
                one["per_s"] if n > 1 else None,
                "(reported)",
                None,
            )
        )
        rows.append(
            metric(
                f"drain_{n}_workers_sent_twice",
                r["sent_twice"],
                "products",
                None,
                f"0, and all {items} arrive",
                r["sent_twice"] == 0 and r["arrived"] == items and r["succeeded"] == items,
            )
        )
    return rows
