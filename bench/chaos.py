"""The chaos suite (issue 11): storeflow's promises measured under faults, all on this machine.

1. receiver SIGKILL x5 under 100 webhooks/s from a Shopify-like retrying sender (5 s timeout, retries)
2. worker SIGKILL x10 during a 20,000-item drain (--quick: x5 during 6,000)
3. PostgreSQL `pg_ctl -m fast stop` and SIGKILL of the postmaster under load (webhooks + worker)
4. Hipoink 503 / latency / 429 phases (the simulator's POST /_sandbox/faults) under webhooks
5. a duplicate storm and out-of-order edits (also two edits in the same second)
6. a fuzz of a few hundred bad deliveries (the server keeps answering /health, nothing half-stored)
7. CRM report faults: corrupt, truncated, missing column, no rows (0 fact rows, the audit names the reason)
8. Hallmark SIGKILL mid-extraction, then `--resume` (0 missing, 0 duplicate files)

Everything runs against a private PostgreSQL the suite starts (a temp folder, a free 127.0.0.1 port) and
kills at will; the machine's shared server is never touched. The receiver (`storeflow serve`), the worker
(`storeflow esl worker`), the Hipoink simulator (`storeflow sandbox up`) and the Hallmark extraction are
real processes, SIGKILLed with os.kill. Every process and the private database are stopped at the end,
also on errors and Ctrl-C. The suite measures; it never fails on a target missed (`met: false` in the
results). It exits non-zero only when it could not run an experiment.

    python bench/chaos.py [--quick] [--only 1,3,...]

Results: bench/results/chaos.json (one object per metric) and bench/results/chaos.md (the full run:
chaos.full.*, a run with --only: chaos.partial.*).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chaos_stack import (
    ROOT,
    Delivery,
    PrivatePostgres,
    Processes,
    ShopifySender,
    free_port,
    make_delivery,
    start_receiver,
)
from esl import metric, write_table

RESULTS = ROOT / "bench" / "results"
SECRET = "shpss_chaos_secret_0123456789abcdef"
ADMIN_TOKEN = "chaos-admin-token-0123456789"
SHOP = "chaos-shop.myshopify.com"
STORE = "CHAOS1"
ID0 = 2**53 + 7_000_000_000
LEASE = 5.0  # [esl] lease_seconds of the workers the suite starts
PG_LEASE = 10.0  # ... in the PostgreSQL experiment: longer than the outage, as in issue 11's reproduction
STUCK_SQL = (
    "SELECT count(*) FROM sync_queue WHERE state = 'in_progress' AND claimed_at < now() - make_interval(secs => %s)"
)
TABLES = "sync_log, hipoink_products, sync_queue, inventory_item_map, inventory_levels, products, webhook_inbox"


@dataclass(frozen=True)
class Sizes:
    receiver_seconds: float
    receiver_kills: int
    drain_items: int
    worker_kills: int
    pg_extra_seconds: float
    pg_outage_seconds: float
    outage_503_seconds: float
    phase_seconds: float
    storm_products: int
    fuzz_per_case: int
    hallmark_orders: int
    crm_quick: bool


QUICK = Sizes(15, 5, 4_000, 5, 2, 8, 10, 6, 100, 10, 24, True)
FULL = Sizes(60, 5, 20_000, 10, 10, 20, 60, 20, 500, 25, 60, False)


# ---------------------------------------------------------------- the stack


@dataclass
class Stack:
    pg: PrivatePostgres
    procs: Processes
    db_url: str
    env: dict[str, str]
    hipoink: str
    port: int
    work: Path
    receiver: subprocess.Popen[str] | None = None
    worker: subprocess.Popen[str] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def one(self, query: str, params: Any = None) -> Any:
        rows = self.sql(query, params)
        return rows[0][0] if rows else None

    def reset(self) -> None:
        self.sql(f"TRUNCATE {TABLES}")
        self.faults_clear()
        httpx.delete(f"{self.hipoink}/_sandbox/products", timeout=10).raise_for_status()

    def fault(self, **spec: Any) -> None:
        httpx.post(f"{self.hipoink}/_sandbox/faults", json={"path": "/api/", **spec}, timeout=10).raise_for_status()

    def faults_clear(self) -> None:
        httpx.delete(f"{self.hipoink}/_sandbox/faults", timeout=10).raise_for_status()

    def labels(self) -> dict[str, dict[str, Any]]:
        got = httpx.get(f"{self.hipoink}/_sandbox/products", params={"store_code": STORE}, timeout=30).json()
        return {p["pc"]: p for p in got["products"]}

    def label_mismatches(self) -> int:
        """Products whose label differs from the products table (valid: shown at its price; deleted: absent)."""
        want = dict(self.sql("SELECT pc, pp FROM products WHERE status = 'valid' AND pc IS NOT NULL"))
        gone = {r[0] for r in self.sql("SELECT pc FROM products WHERE status = 'deleted' AND pc IS NOT NULL")}
        have = {pc: p.get("pp") for pc, p in self.labels().items()}
        wrong = sum(1 for pc, pp in want.items() if have.get(pc) != pp)
        return wrong + sum(1 for pc in have if pc in gone and pc not in want)

    def queue(self) -> dict[str, int]:
        return dict(self.sql("SELECT state, count(*) FROM sync_queue GROUP BY 1"))

    def stuck(self) -> int:
        """Items in progress for longer than a lease (no send here takes more than 4 s)."""
        return int(self.one(STUCK_SQL, (PG_LEASE,)))

    def wait_drained(self, timeout: float) -> float:
        """Wait until nothing is pending or in progress (except stuck items); the seconds it took (timeout if never)."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            with contextlib.suppress(psycopg.Error):
                q = self.queue()
                if not q.get("pending") and q.get("in_progress", 0) <= self.stuck():
                    return time.monotonic() - start
            time.sleep(0.25)
        return timeout

    def start_receiver(self) -> None:
        self.receiver = start_receiver(self.procs, self.port)

    def start_worker(self, **env: str) -> subprocess.Popen[str]:
        self.worker = self.procs.start(["esl", "worker"], env=env)
        return self.worker

    def stop_worker(self) -> None:
        if self.worker is not None:
            self.procs.stop(self.worker)
            self.worker = None

    def send(self, deliveries: list[Delivery], rate: float | None, **sender: Any) -> ShopifySender:
        out = ShopifySender(self.base_url, **sender)
        asyncio.run(out.send(deliveries, rate))
        return out


def inbox_stored(stack: Stack, deliveries: list[Delivery], duplicates: bool = False) -> set[str]:
    """Webhook ids (one per delivery, the same on each retry) of deliveries stored in webhook_inbox; with
    ``duplicates`` also those recorded only as a duplicate (of an earlier delivery with the same ids or body)."""
    ids = [d.headers["X-Shopify-Webhook-Id"] for d in deliveries]
    rows = stack.sql(
        "SELECT DISTINCT webhook_id FROM webhook_inbox WHERE webhook_id = ANY(%s) AND (%s OR outcome <> 'duplicate')",
        (ids, duplicates),
    )
    return {r[0] for r in rows}


TAGS = {"RK": 1, "PG": 2, "HP": 3, "DS": 4, "OO": 5, "SS": 6, "FZ": 7}  # id ranges; WK (backlog) is 0


def product(tag: str, i: int, price: str, updated: datetime, title: str | None = None) -> dict[str, Any]:
    pid = ID0 + TAGS[tag] * 10**8 + i * 10
    stamp = updated.strftime("%Y-%m-%dT%H:%M:%S-00:00")
    return {
        "id": pid,
        "title": title or f"Chaos {tag} {i}",
        "updated_at": stamp,
        "vendor": "Chaos",
        "images": [{"id": pid + 7, "position": 1, "src": f"https://cdn.shopify.com/s/files/1/c/{i}.jpg"}],
        "variants": [
            {
                "id": pid + 10**12,
                "title": "Default Title",
                "price": price,
                "sku": f"SKU-{tag}-{i}",
                "barcode": f"{tag}-{i}",
                "inventory_item_id": pid + 2 * 10**12,
                "updated_at": stamp,
            }
        ],
    }


T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def deliveries_for(
    tag: str, count: int, start: int = 0, version: int = 0, topic: str = "products/update"
) -> list[Delivery]:
    out = []
    for i in range(start, start + count):
        price = f"{(i % 90) + 1 + version}.{version % 100:02d}"
        payload = product(tag, i, price, T0 + timedelta(seconds=version * 10))
        out.append(make_delivery(SECRET, SHOP, topic, payload, f"{tag}-{i}"))
    return out


def at_times(start: float, actions: list[tuple[float, Callable[[], None]]]) -> threading.Thread:
    """Run each action at ``start + offset`` in a thread (beside the sender's event loop)."""
    errors: list[BaseException] = []

    def run() -> None:
        for offset, action in actions:
            delay = start + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                action()
            except BaseException as exc:  # reported by the experiment
                errors.append(exc)
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def join(thread: threading.Thread) -> None:
    thread.join(300)
    errors = thread.errors  # type: ignore[attr-defined]
    if errors:
        raise RuntimeError(f"chaos action failed: {errors[0]!r}") from errors[0]


def in_flight(deliveries: list[Delivery], moment: float) -> int:
    return sum(1 for d in deliveries for s, e, _ in d.attempts if s <= moment < e)


def sender_rows(name: str, sender: ShopifySender) -> list[dict[str, Any]]:
    s = sender.stats
    print(
        f"  sender: {s.deliveries} deliveries, {s.attempts} attempts, CPU {s.cpu_seconds:.1f} s of "
        f"{s.wall_seconds:.1f} s wall ({100 * s.cpu_share:.0f}% of one core), at most {s.max_in_flight} requests in "
        f"flight (limit {sender.concurrency})",
        flush=True,
    )
    return [
        metric(f"{name}_sender_cpu_share", 100 * s.cpu_share, "% of a core", None, "(< 50: not the bottleneck)", None)
    ]


def figures_row(name: str, fig: dict[str, Any]) -> None:
    print(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in fig.items()), flush=True)


# ---------------------------------------------------------------- 1. receiver SIGKILL


def exp_receiver_kills(stack: Stack, sz: Sizes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    stack.reset()
    stack.start_worker(HIPOINK_RATE_LIMIT_PER_SECOND="50")
    n = int(sz.receiver_seconds * 100)
    deliveries = deliveries_for("RK", n)
    kills: list[tuple[float, float]] = []  # (killed at, healthy again at)

    def kill() -> None:
        assert stack.receiver is not None
        at = time.monotonic()
        stack.procs.kill9(stack.receiver)
        stack.start_receiver()
        kills.append((at, time.monotonic()))

    gap = sz.receiver_seconds / (sz.receiver_kills + 1)
    thread = at_times(time.monotonic(), [(gap * (k + 1), kill) for k in range(sz.receiver_kills)])
    sender = stack.send(deliveries, rate=100)
    join(thread)
    stack.wait_drained(60)
    stored = inbox_stored(stack, deliveries)
    acked = [d for d in deliveries if d.acked_at is not None]
    recorded = inbox_stored(stack, deliveries, duplicates=True)  # a duplicate of another delivery is not lost
    lost = sum(1 for d in acked if d.headers["X-Shopify-Webhook-Id"] not in recorded)
    dupes = int(
        stack.one(
            "SELECT count(*) FROM webhook_inbox WHERE outcome = 'duplicate' AND webhook_id = ANY(%s)",
            ([d.headers["X-Shopify-Webhook-Id"] for d in deliveries],),
        )
    )
    inflight = sum(in_flight(deliveries, at) for at, _ in kills)
    labels = stack.labels()
    on_labels = sum(1 for d in acked if d.key in labels)
    recovery = [
        min((d.acked_at for d in deliveries if d.acked_at and d.acked_at > up), default=float("inf")) - at
        for at, up in kills
    ]
    mismatch = stack.label_mismatches()
    fig = {
        "sent": n,
        "attempts": sender.stats.attempts,
        "acknowledged": len(acked),
        "stored": len(stored),
        "on_labels": on_labels,
        "lost": lost,
        "never_acked": n - len(acked),
        "duplicate_sends": dupes,
        "in_flight_at_kills": inflight,
        "recovery_s_max": round(max(recovery), 2),
        "restart_s_max": round(max(up - at for at, up in kills), 2),
        "label_mismatches": mismatch,
    }
    figures_row("receiver kills", fig)
    stack.stop_worker()
    rows = [
        metric("receiver_kill_acked_lost", lost, "webhooks", None, "0", lost == 0),
        metric("receiver_kill_never_acked", n - len(acked), "webhooks", None, "(reported: sender gave up)", None),
        metric(
            "receiver_kill_duplicate_sends",
            dupes,
            "deliveries",
            inflight,
            "<= in flight at the kills",
            dupes <= inflight,
        ),
        metric("receiver_kill_recovery_max", max(recovery), "s", None, "(kill -> next ack, incl. restart)", None),
        metric("receiver_kill_label_mismatches", mismatch, "products", None, "0", mismatch == 0),
        *sender_rows("receiver_kill", sender),
    ]
    return rows, fig


# ---------------------------------------------------------------- 2. worker SIGKILL during a drain

BACKLOG_SQL = """
WITH m AS (SELECT id FROM store_mappings WHERE source_store_id = %(shop)s),
p AS (
    INSERT INTO products (store_mapping_id, source_store_id, source_id, source_variant_id, pc, pn, pp, pi, pim,
                          source_updated_at)
    SELECT m.id, %(shop)s, (%(base)s + g)::text, (%(base)s + 1000000000000 + g)::text,
           'WK-' || g, 'Backlog product ' || g, (g %% 100) || '.99', 'SKU-' || g,
           'https://cdn.shopify.com/s/files/1/b/' || g || '.jpg', now()
      FROM m, generate_series(1, %(n)s) g
    RETURNING id, store_mapping_id
)
INSERT INTO sync_queue (store_mapping_id, store_code, product_id, operation, reason)
SELECT p.store_mapping_id, %(store)s, p.id, 'upsert', 'resync' FROM p
"""


def exp_worker_kills(stack: Stack, sz: Sizes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    stack.reset()
    batch = 200
    stack.sql(BACKLOG_SQL, {"shop": SHOP, "store": STORE, "n": sz.drain_items, "base": ID0})
    stack.fault(latency_ms=250, seconds=3600)  # every batch spends a while in flight
    env = {"HIPOINK_BATCH_SIZE": str(batch), "HIPOINK_RATE_LIMIT_PER_SECOND": "10"}
    started = time.monotonic()
    kills = 0
    rng = random.Random(11)
    for _ in range(sz.worker_kills):
        worker = stack.start_worker(**env)
        # kill once it is sending: after its first batch is recorded, at a random moment of a batch
        base = int(stack.one("SELECT count(*) FROM sync_queue WHERE state <> 'pending'"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if int(stack.one("SELECT count(*) FROM sync_queue WHERE state <> 'pending'")) > base:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0.3, 1.2))
        stack.procs.kill9(worker)
        kills += 1
    stack.start_worker(**env)
    drain_s = stack.wait_drained(60 + sz.drain_items / 100)
    total_s = time.monotonic() - started
    stack.faults_clear()
    q = stack.queue()
    labels = stack.labels()
    dup = sum(p["updates"] - 1 for p in labels.values())
    lease_expired = int(stack.one("SELECT count(*) FROM sync_log WHERE status = 'lease_expired'"))
    mismatch = stack.label_mismatches()
    fig = {
        "items": sz.drain_items,
        "kills": kills,
        "succeeded": q.get("succeeded", 0),
        "dead": q.get("dead", 0),
        "failed": q.get("failed", 0),
        "left": q.get("pending", 0) + q.get("in_progress", 0),
        "on_labels": len(labels),
        "duplicate_sends": dup,
        "lease_expiries": lease_expired,
        "drain_s": round(total_s, 1),
        "label_mismatches": mismatch,
    }
    figures_row("worker kills", fig)
    stack.stop_worker()
    fig["same_batch_killed_3x_dead"] = same_batch_kills(stack, env)
    bound = kills * batch
    lost = sz.drain_items - len(labels)
    rows = [
        metric("worker_kill_items_not_on_labels", lost, "items", None, "0", lost == 0),
        metric(
            "worker_kill_dead_letters",
            q.get("dead", 0) + q.get("failed", 0),
            "items",
            None,
            "0",
            not q.get("dead") and not q.get("failed"),
        ),
        metric("worker_kill_duplicate_sends", dup, "products", bound, "<= batches in flight x batch", dup <= bound),
        metric("worker_kill_label_mismatches", mismatch, "products", None, "0", mismatch == 0),
        metric("worker_kill_drain_seconds", total_s, "s", None, f"(reported: {sz.drain_items} items)", None),
        metric(
            "worker_kill_same_batch_3x_dead",
            fig["same_batch_killed_3x_dead"],
            "items",
            SAME_BATCH,
            "0 (a lease expiry is no refusal)",
            fig["same_batch_killed_3x_dead"] == 0,
        ),
    ]
    del drain_s
    return rows, fig


SAME_BATCH = 50


def same_batch_kills(stack: Stack, env: dict[str, str], kills: int = 3) -> int:
    """Kill the worker three times while it sends the same batch (Hipoink takes 4 s to answer), then let a
    worker finish: how many of the batch's items were dead-lettered although Hipoink never refused them."""
    stack.reset()
    stack.sql(BACKLOG_SQL, {"shop": SHOP, "store": STORE, "n": SAME_BATCH, "base": ID0})
    stack.fault(latency_ms=4000, seconds=3600)
    for _ in range(kills):
        since = stack.one("SELECT now()")
        worker = stack.start_worker(**env)
        deadline = time.monotonic() + 4 * LEASE + 30
        while time.monotonic() < deadline:
            if stack.one("SELECT count(*) FROM sync_queue WHERE state = 'in_progress' AND claimed_at > %s", (since,)):
                break
            time.sleep(0.05)
        time.sleep(0.5)  # the request is in flight
        stack.procs.kill9(worker)
    stack.faults_clear()
    stack.start_worker(**env)
    stack.wait_drained(4 * LEASE + 20)
    stack.stop_worker()
    return int(stack.one("SELECT count(*) FROM sync_queue WHERE state IN ('dead', 'failed')"))


# ---------------------------------------------------------------- 3. PostgreSQL outages


def exp_postgres(stack: Stack, sz: Sizes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    stack.reset()
    stack.start_worker(HIPOINK_RATE_LIMIT_PER_SECOND="50", STOREFLOW_CONFIG=str(stack.work / "storeflow-pg.toml"))
    # each outage: 3 s of slow Hipoink (a batch of what piled up meanwhile is in flight), the outage, 3 s after
    # the fast stop lasts 3 s (the reproduction: shorter than the lease), the kill -9 longer (reconnect
    # back-off); each has 3 s of slow Hipoink before (a batch of what piled up meanwhile is in flight) and 3 s after
    lengths = {"fast_stop": 3.0, "kill9": sz.pg_outage_seconds}
    span = 3 + lengths["fast_stop"] + 3
    n = int((1 + span + 3 + lengths["kill9"] + 3 + sz.pg_extra_seconds) * 100)
    deliveries = deliveries_for("PG", n)
    outages: dict[str, tuple[float, float, float]] = {}  # kind -> (down at, back at, back wall-clock)
    held: dict[str, list[int]] = {}

    def outage(kind: str) -> Callable[[], None]:
        def go() -> None:
            # sends that start in the 3.5 s window take 2 s: the database goes while the second batch (of what
            # piled up while the first was slow) is in flight, right after it was claimed
            stack.fault(latency_ms=2000, seconds=3.5)
            since = stack.one("SELECT now()")
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                time.sleep(0.02)
                second = stack.one(
                    "SELECT count(*) FROM sync_queue WHERE state = 'in_progress' AND claimed_at > %s + interval '1 s'",
                    (since,),
                )
                if second:
                    break
            held[kind] = [r[0] for r in stack.sql("SELECT product_id FROM sync_queue WHERE state = 'in_progress'")]
            down = time.monotonic()
            if kind == "fast_stop":
                stack.pg.stop_fast()
            else:
                stack.pg.kill9()
            time.sleep(lengths[kind])
            back = stack.pg.start()
            outages[kind] = (down, back, time.time() - (time.monotonic() - back))

        return go

    thread = at_times(time.monotonic(), [(1.0, outage("fast_stop")), (1.0 + span, outage("kill9"))])
    sender = stack.send(deliveries, rate=100)
    join(thread)
    # a price change of the products held at the outages and of every 5th other one, after the outages
    stack.faults_clear()
    time.sleep(1.0)
    held_ids = sorted({pid for ids in held.values() for pid in ids})
    held_pcs = {r[0] for r in stack.sql("SELECT pc FROM products WHERE id = ANY(%s)", (held_ids,))}
    again = [d for d in deliveries_for("PG", n, version=1) if d.key in held_pcs or int(d.key[3:]) % 5 == 0]
    stack.send(again, rate=200)
    settle = stack.wait_drained(PG_LEASE + 5)
    everything = deliveries + again
    stored = inbox_stored(stack, everything)
    acked = [d for d in everything if d.acked_at is not None]
    recorded = inbox_stored(stack, everything, duplicates=True)  # a duplicate of another delivery is not lost
    lost = sum(1 for d in acked if d.headers["X-Shopify-Webhook-Id"] not in recorded)
    in_prog = stack.stuck()
    sends = {pc: p["updates"] for pc, p in stack.labels().items()}
    changed = {d.key for d in again}
    resent = sum(max(0, n_sent - (2 if pc in changed else 1)) for pc, n_sent in sends.items())
    dead = int(stack.one("SELECT count(*) FROM sync_queue WHERE state IN ('dead', 'failed')"))
    mismatch = stack.label_mismatches()
    labels = stack.labels()
    rows: list[dict[str, Any]] = []
    fig: dict[str, Any] = {
        "sent": len(everything),
        "acknowledged": len(acked),
        "stored": len(stored),
        "on_labels": len(labels),
        "lost": lost,
        "dead": dead,
        "stuck_in_progress": in_prog,
        "held_at_outages": len(held_ids),
        "duplicate_sends": resent,
        "label_mismatches": mismatch,
        "settle_s": round(settle, 1),
    }
    for kind, (down, back, back_wall) in outages.items():
        # capped at Shopify's 5 s: a longer one is the sender's own lag on this loaded machine, still no answer
        during = [min(e - s, 5.0) for d in deliveries for s, e, _ in d.attempts if down <= s < back]
        first_ok = min((d.acked_at for d in everything if d.acked_at and d.acked_at > back), default=float("inf"))
        recovery = first_ok - back
        first_sent = stack.one(
            "SELECT extract(epoch FROM min(acked_at)) FROM sync_log"
            " WHERE status = 'succeeded' AND acked_at > to_timestamp(%s)",
            (back_wall,),
        )
        worker_recovery = float(first_sent) - back_wall if first_sent is not None else float("inf")
        held_stuck = int(
            stack.one(
                "SELECT count(DISTINCT product_id) FROM sync_queue"
                " WHERE product_id = ANY(%s) AND state = 'in_progress'",
                (held.get(kind, []),),
            )
        )
        slowest = max(during) if during else 0.0
        fig.update(
            {
                f"{kind}_answers_during": len(during),
                f"{kind}_slowest_answer_s": round(slowest, 2),
                f"{kind}_answers_over_2s": sum(1 for x in during if x > 2),
                f"{kind}_receiver_recovery_s": round(recovery, 2),
                f"{kind}_worker_recovery_s": round(worker_recovery, 2),
                f"{kind}_held_then_stuck": held_stuck,
            }
        )
        rows += [
            metric(f"pg_{kind}_slowest_answer_during", slowest, "s", 10.0, "<= 2 s (503 fast)", slowest <= 2),
            metric(f"pg_{kind}_receiver_recovery", recovery, "s", None, "<= 2 s after PG is back", recovery <= 2),
            metric(
                f"pg_{kind}_worker_recovery",
                worker_recovery,
                "s",
                None,
                "<= 2 s (PG back -> next send acked)",
                worker_recovery <= 2,
            ),
        ]
    figures_row("postgres outages", fig)
    stack.stop_worker()
    rows += [
        metric("pg_outage_acked_lost", lost, "webhooks", None, "0", lost == 0),
        metric("pg_outage_stuck_in_progress", in_prog, "items", None, "0", in_prog == 0),
        metric("pg_outage_dead_letters", dead, "items", None, "0", dead == 0),
        metric(
            "pg_outage_duplicate_sends",
            resent,
            "products",
            len(held_ids),
            "<= held at the outages",
            resent <= len(held_ids),
        ),
        metric("pg_outage_label_mismatches", mismatch, "products", None, "0", mismatch == 0),
        *sender_rows("pg_outage", sender),
    ]
    return rows, fig


# ---------------------------------------------------------------- 4. Hipoink faults


def exp_hipoink(stack: Stack, sz: Sizes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    stack.reset()
    stack.start_worker()  # the spec's defaults: 10 requests/s, 3 attempts, 1 s backoff x2
    p = sz.phase_seconds
    phases = [
        ("503", {"status": 503, "seconds": sz.outage_503_seconds}, sz.outage_503_seconds),
        ("latency", {"latency_ms": 3000, "seconds": p}, p),
        ("429", {"status": 429, "retry_after": 2, "seconds": p}, p),
    ]
    total = sum(s for _, _, s in phases) + 1 * (len(phases) + 1) + 1
    n = int(total * 50)
    deliveries = deliveries_for("HP", n)
    actions: list[tuple[float, Callable[[], None]]] = []
    t = 1.0
    for _, spec, seconds in phases:
        actions.append((t, lambda spec=spec: stack.fault(**spec)))
        t += seconds + 1
    thread = at_times(time.monotonic(), actions)
    sender = stack.send(deliveries, rate=50)
    join(thread)
    drain = stack.wait_drained(90)
    q = stack.queue()
    dead = q.get("dead", 0) + q.get("failed", 0)
    reasons = dict(
        stack.sql(
            "SELECT coalesce(http_status::text, 'none'), count(*) FROM sync_log WHERE status IN ('dead', 'failed')"
            " GROUP BY 1"
        )
    )
    mismatch = stack.label_mismatches()
    labels = stack.labels()
    acked = sum(1 for d in deliveries if d.acked_at is not None)
    fig = {
        "sent": n,
        "acknowledged": acked,
        "on_labels": len(labels),
        "dead": dead,
        "dead_by_status": reasons,
        "left": q.get("pending", 0) + q.get("in_progress", 0),
        "drain_after_s": round(drain, 1),
        "label_mismatches": mismatch,
    }
    figures_row("hipoink faults", fig)
    stack.stop_worker()
    share = 100 * dead / max(1, int(stack.one("SELECT count(DISTINCT product_id) FROM sync_queue")))
    return [
        metric("hipoink_transient_dead_letters", dead, "items", None, "0", dead == 0),
        metric("hipoink_transient_dead_share", share, "%", None, "(reported)", None),
        metric("hipoink_label_mismatches", mismatch, "products", None, "0", mismatch == 0),
        metric("hipoink_drain_after_faults", drain, "s", None, "(reported)", None),
        *sender_rows("hipoink", sender),
    ], fig


# ---------------------------------------------------------------- 5. duplicates and order


def exp_order(stack: Stack, sz: Sizes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    stack.reset()
    stack.start_worker(HIPOINK_RATE_LIMIT_PER_SECOND="50")
    n = sz.storm_products
    # a duplicate storm: every delivery five times at once (same ids), then once more later
    storm = deliveries_for("DS", n)
    copies = [Delivery(d.topic, d.body, d.headers, d.key) for d in storm for _ in range(5)]
    random.Random(3).shuffle(copies)
    stack.send(copies, rate=None, concurrency=64)
    stack.send([Delivery(d.topic, d.body, d.headers, d.key) for d in storm], rate=None)
    # out of order: the newer edit first (a later updated_at), then the older one
    newer = deliveries_for("OO", n, version=2)
    older = deliveries_for("OO", n, version=1)
    stack.send(newer, rate=None, concurrency=32)
    stack.send(older, rate=None, concurrency=32)
    # two edits in the same second (equal updated_at), the later one (X-Shopify-Triggered-At) delivered first
    same_newer, same_older = [], []
    for i in range(n):
        stamp = T0 + timedelta(minutes=5)
        older_at = (stamp + timedelta(milliseconds=100)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        newer_at = (stamp + timedelta(milliseconds=700)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        same_older.append(
            make_delivery(
                SECRET, SHOP, "products/update", product("SS", i, "10.00", stamp), f"SS-{i}", triggered_at=older_at
            )
        )
        same_newer.append(
            make_delivery(
                SECRET, SHOP, "products/update", product("SS", i, "20.00", stamp), f"SS-{i}", triggered_at=newer_at
            )
        )
    stack.send(same_newer, rate=None, concurrency=32)
    stack.send(same_older, rate=None, concurrency=32)
    stack.wait_drained(60)
    stored = int(
        stack.one(
            "SELECT count(*) FROM webhook_inbox WHERE outcome <> 'duplicate' AND webhook_id = ANY(%s)",
            ([d.headers["X-Shopify-Webhook-Id"] for d in storm],),
        )
    )
    storm_items = int(
        stack.one("SELECT count(*) FROM sync_queue q JOIN products p ON p.id = q.product_id WHERE p.pc LIKE 'DS-%%'")
    )
    labels = stack.labels()
    storm_sends = sum(p["updates"] for pc, p in labels.items() if pc.startswith("DS-"))
    want = {d.key: json.loads(d.body)["variants"][0]["price"] for d in newer}
    price = dict(stack.sql("SELECT pc, pp FROM products WHERE pc LIKE 'OO-%%' OR pc LIKE 'SS-%%'"))
    stale = sum(1 for pc, pp in want.items() if _same_price(price.get(pc), pp))
    stale = len(want) - stale
    same_stale = sum(1 for i in range(n) if not _same_price(price.get(f"SS-{i}"), "20.00"))
    mismatch = stack.label_mismatches()
    fig = {
        "storm_deliveries": len(copies) + n,
        "storm_events": n,
        "storm_stored": stored,
        "storm_queue_items": storm_items,
        "storm_hipoink_sends": storm_sends,
        "out_of_order_products": n,
        "older_price_won": stale,
        "same_second_products": n,
        "same_second_older_won": same_stale,
        "label_mismatches": mismatch,
    }
    figures_row("duplicates and order", fig)
    stack.stop_worker()
    return [
        metric("storm_stored_per_event", stored / n, "rows/event", None, "1", stored == n),
        metric("storm_hipoink_sends_per_product", storm_sends / n, "sends", None, "1", storm_sends == n),
        metric("out_of_order_older_price_won", stale, "products", None, "0", stale == 0),
        metric("same_second_older_price_won", same_stale, "products", None, "0", same_stale == 0),
        metric("order_label_mismatches", mismatch, "products", None, "0", mismatch == 0),
    ], fig


def _same_price(a: str | None, b: str) -> bool:
    try:
        return a is not None and float(a) == float(b)
    except ValueError:
        return False


# ---------------------------------------------------------------- 6. fuzz


def lose_database(
    stack: Stack, procs: Processes, args: list[str], mid_run: Callable[[], bool], env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run a command, `pg_ctl -m fast stop` once ``mid_run()`` says it is working, start PostgreSQL again when
    the command has ended (or after 30 s); what the command did: exit code, last line, a traceback or not."""
    proc = procs.start(args, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not mid_run():
        time.sleep(0.05)
    ran_into_it = proc.poll() is None
    stack.pg.stop_fast()
    down = time.monotonic()
    try:
        code: int | None = proc.wait(30)
    except subprocess.TimeoutExpired:
        code = None  # still running with the database gone
    exited_after = time.monotonic() - down
    stack.pg.start()
    if code is None:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            procs.kill9(proc)
    return {
        "mid_run": ran_into_it,
        "exit": code,
        "exit_s_after_stop": round(exited_after, 1),
        "traceback": procs.traceback_in(proc),
        "said": procs.last_line(proc),
    }


def fuzz_cases(per_case: int) -> list[Delivery]:
    """Bad deliveries: signed but strange (the receiver must store or refuse them cleanly), or unsigned."""
    rng = random.Random(5)
    out: list[Delivery] = []
    big = 10**30

    def prod(i: int, **change: Any) -> dict[str, Any]:
        doc = product("FZ", i, f"{rng.randrange(1, 99)}.50", T0)
        variant = change.pop("variant", {})
        doc["variants"][0].update(variant)
        doc.update(change)
        return doc

    def add(
        case: str, i: int, payload: Any = None, raw: bytes | None = None, topic: str = "products/update", **kw: Any
    ) -> None:
        out.append(make_delivery(SECRET, SHOP, topic, payload, f"{case}:{i}", raw=raw, **kw))

    i = 0
    for _ in range(per_case):
        i += 1
        add("nul_title", i, prod(i, title=f"bad\u0000title {i}"))
        i += 1
        add("nul_sku", i, prod(i, variant={"sku": f"S\u0000{i}"}))
        i += 1
        add("nul_image", i, prod(i, images=[{"id": 1, "position": 1, "src": f"https://x/\u0000{i}.jpg"}]))
        i += 1
        body = json.dumps(prod(i, title="TITLE")).replace("TITLE", "lone \\ud800 surrogate").encode()
        add("lone_surrogate", i, raw=body)
        i += 1
        add("updated_at_offset", i, prod(i, updated_at="2026-03-01T12:00:00+16:30"))
        i += 1
        add("triggered_at_offset", i, prod(i), triggered_at="2026-03-01T12:00:00+17:00")
        i += 1
        inv = {"inventory_item_id": ID0 + i, "location_id": 1, "available": big, "updated_at": "2026-03-01T12:00:00Z"}
        add("available_1e30", i, inv, topic="inventory_levels/update")
        i += 1
        add("event_id_3kb", i, prod(i), event_id=rng.randbytes(1600).hex())  # incompressible
        i += 1
        add("not_json", i, raw=b'{"id": 1, "variants": [' + str(i).encode())
        i += 1
        add("json_array", i, [prod(i)])
        i += 1
        add("no_id", i, {k: v for k, v in prod(i).items() if k != "id"})
        i += 1
        add("variants_not_list", i, prod(i, variants={"id": 1}))
        i += 1
        add("price_text", i, prod(i, variant={"price": "twelve"}))
        i += 1
        add("huge_title", i, prod(i, title="T" * 200_000))
        i += 1
        add("id_negative_float", i, prod(i, id=-1.5))
        i += 1
        add("deep_nesting", i, raw=b"[" * 5000 + b"]" * 5000)
        i += 1
        add("empty_body", i, raw=b"")
        i += 1
        add("unknown_topic", i, prod(i), topic="products/frobnicate")
        out[-1].path = "/webhooks/shopify"  # one URL for every topic, the topic in the header
        i += 1
        add("wrong_hmac", i, prod(i), sign=False)
        i += 1
        add("too_large", i, raw=b'{"id":1,"pad":"' + b"x" * (1024 * 1024 + 10) + b'"}')
    return out


def exp_fuzz(stack: Stack, sz: Sizes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    stack.reset()
    cases = fuzz_cases(sz.fuzz_per_case)
    probes: list[tuple[float, int | str]] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=2) as http:
            while not stop.is_set():
                t = time.monotonic()
                try:
                    code: int | str = http.get(f"{stack.base_url}/health").status_code
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                probes.append((time.monotonic() - t, code))
                stop.wait(0.1)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        sender = stack.send(cases, rate=100, retries=3, backoff=(0.5, 1, 2))
    finally:
        stop.set()
        thread.join(10)
    health_bad = sum(1 for dt, code in probes if code != 200 or dt > 2)
    signed = [d for d in cases if not d.key.startswith(("wrong_hmac", "too_large"))]
    stored = inbox_stored(stack, cases)
    acked = [d for d in cases if d.acked_at is not None]
    recorded = inbox_stored(stack, cases, duplicates=True)  # a duplicate of another delivery is not lost
    lost = sum(1 for d in acked if d.headers["X-Shopify-Webhook-Id"] not in recorded)
    never = [d for d in signed if d.acked_at is None]
    refused_stored = sum(1 for d in cases if d.acked_at is None and d.headers["X-Shopify-Webhook-Id"] in recorded)
    by_case: dict[str, int] = {}
    for d in never:
        case = f"{d.key.split(':')[0]} ({d.status})"
        by_case[case] = by_case.get(case, 0) + 1
    # half-stored: a product row without its label fields, a queue item without its product, a refused one's rows
    half = int(
        stack.one(
            "SELECT (SELECT count(*) FROM products WHERE status = 'valid' AND (pc IS NULL OR pp IS NULL OR pn IS NULL))"
            " + (SELECT count(*) FROM sync_queue q"
            "    WHERE NOT EXISTS (SELECT 1 FROM products p WHERE p.id = q.product_id))"
        )
    )
    bad_hmac_2xx = sum(1 for d in cases if d.key.startswith("wrong_hmac") and d.acked_at is not None)
    fig = {
        "deliveries": len(cases),
        "signed": len(signed),
        "acknowledged": len(acked),
        "stored": len(stored),
        "lost": lost,
        "signed_never_acked": len(never),
        "never_acked_by_case": by_case,
        "refused_but_stored": refused_stored,
        "half_stored": half,
        "wrong_hmac_accepted": bad_hmac_2xx,
        "health_probes": len(probes),
        "health_failures": health_bad,
        "receiver_alive": stack.receiver is not None and stack.receiver.poll() is None,
    }
    figures_row("fuzz", fig)
    return [
        metric(
            "fuzz_signed_never_recorded",
            len(never),
            "deliveries",
            len(signed),
            "0 (2xx: stored or invalid)",
            len(never) == 0,
        ),
        metric("fuzz_health_failures", health_bad, "probes", len(probes), "0", health_bad == 0),
        metric("fuzz_half_stored", half + refused_stored + lost, "rows", None, "0", half + refused_stored + lost == 0),
        metric("fuzz_wrong_hmac_accepted", bad_hmac_2xx, "deliveries", None, "0", bad_hmac_2xx == 0),
        *sender_rows("fuzz", sender),
    ], fig


# ---------------------------------------------------------------- 7. CRM report faults

# what the audit's error must say (any of these words): an XLSX report or the reporting API's JSON
CRM_FAULTS = [
    ("corrupt", {"kind": "corrupt"}, ("not an xlsx", "malformed")),
    ("truncated", {"kind": "truncated"}, ("xlsx", "malformed")),
    ("missing_column", {"kind": "missing_column"}, ("missing column",)),
    ("zero_rows", {"kind": "zero_rows"}, ("no data rows",)),
]


def exp_crm(stack: Stack, sz: Sizes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from storeflow.crm.progress import Progress
    from storeflow.crm.runner import DownloadOptions, run_bootstrap, run_download, select_stores
    from storeflow.crm.store import lock_key
    from storeflow.db.connect import Database
    from storeflow.sandbox.host import SandboxHost
    from storeflow.settings import load_settings

    folder = stack.work / "crm"
    host = SandboxHost(["tumbledry", "uclean"], port_base=0, seed=11)
    host.start_in_thread()
    db = Database(stack.db_url)
    try:
        for name, delay in (("tumbledry", 0.1), ("uclean", 0.1)):
            host.sim(name).report_delay = delay  # type: ignore[attr-defined]
        config = folder / "sb" / "storeflow.toml"
        host.write_config(config)
        env = {**stack.env, "OUTPUT_DIRECTORY": str(folder / "data")}
        settings = load_settings(config, env=env)
        settings.config.crm.profiles_dir = folder / "profiles"
        settings.config.crm.download_dir = folder / "downloads"
        settings.config.crm.download_timeout_seconds = 15
        settings.MAX_RETRIES = 1
        # no browser needed: the API and export stores (--quick: one of each CRM)
        stores = [s for s in settings.config.crm.stores if s.mode in ("api", "export")]
        if sz.crm_quick:
            stores = [s for s in stores if (s.crm, s.mode) in {("td", "api"), ("uc", "export")}]
        boot = asyncio.run(run_bootstrap(settings, stores, None, True, False, db))
        if any(o.status != "ok" for o in boot):
            raise RuntimeError(f"CRM bootstrap failed: {[(o.key, o.error) for o in boot]}")
        results = []
        day = datetime(2025, 11, 1).date()
        for store in stores:
            sim = "tumbledry" if store.crm == "td" else "uclean"
            for name, spec, words in CRM_FAULTS:
                day += timedelta(days=1)
                httpx.post(f"{host.urls[sim]}/_sandbox/report-faults", json={**spec, "store": store.code})
                one = select_stores(settings, store.crm, store.code)
                options = DownloadOptions(start=day.isoformat(), end=day.isoformat(), headless=True, alert=False)
                summary = asyncio.run(run_download(settings, db, one, options, Progress([s.key for s in one])))
                table, column = (
                    ("fact_td_orders", "order_date") if store.crm == "td" else ("fact_uc_gst", "invoice_date")
                )
                facts = int(stack.one(f"SELECT count(*) FROM {table} WHERE {column} = %s", (day,)))
                audit = stack.sql(
                    "SELECT status, coalesce(error, '') FROM ingest_audit WHERE store = %s AND from_date = %s"
                    " ORDER BY id DESC LIMIT 1",
                    (store.code, day),
                )
                status, error = audit[0] if audit else ("none", "")
                named = any(w in error.lower() for w in words)
                results.append((store.key, name, facts, status, named, summary.exit_code, error[:80]))
        # and a good file afterwards, so that "0 rows" is not "nothing works"
        day += timedelta(days=1)
        good = asyncio.run(
            run_download(
                settings,
                db,
                stores,
                DownloadOptions(start=day.isoformat(), end=day.isoformat(), headless=True, alert=False),
                Progress([s.key for s in stores]),
            )
        )
        good_rows = int(
            stack.one(
                "SELECT (SELECT count(*) FROM fact_td_orders WHERE order_date = %(d)s)"
                " + (SELECT count(*) FROM fact_uc_gst WHERE invoice_date = %(d)s)",
                {"d": day},
            )
        )
        # a download that loses the database mid-run: exit 4 and a clear message, never a traceback
        import tomllib

        import tomli_w

        doc = tomllib.loads(config.read_text())
        doc.setdefault("crm", {}).update(
            {"profiles_dir": str(folder / "profiles"), "download_dir": str(folder / "downloads")}
        )
        config.write_text(tomli_w.dumps(doc))
        td = next(s for s in stores if s.crm == "td")
        day += timedelta(days=1)  # a window of its own
        httpx.post(
            f"{host.urls['tumbledry']}/_sandbox/report-faults", json={"kind": "slow", "store": td.code, "seconds": 6}
        )
        procs = Processes({**env, "STOREFLOW_CONFIG": str(config)}, folder)
        try:
            # the store's own lock (held for the download), not the migration lock every command takes first
            key = lock_key(td.key)
            held = (
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                f" AND classid::bigint = {key >> 32} AND objid::bigint = {key & 0xFFFFFFFF}"
            )
            args = ["--config", str(config), "crm", "download", "--crm", "td", "--store", td.code]
            lost_db = lose_database(
                stack, procs, [*args, "--from", day.isoformat(), "--to", day.isoformat()], lambda: stack.one(held) > 0
            )
        finally:
            procs.stop_all()
    finally:
        db.close()
        host.stop()
    fact_rows = sum(r[2] for r in results)
    unnamed = [f"{r[0]}/{r[1]}: {r[3]} {r[6]!r}" for r in results if not r[4]]
    fig = {
        "bad_files": len(results),
        "fact_rows_from_bad_files": fact_rows,
        "audits_naming_reason": sum(1 for r in results if r[4]),
        "unnamed": unnamed,
        "good_file_exit": good.exit_code,
        "db_lost_mid_run": lost_db,
        "good_file_rows": good_rows,
    }
    figures_row("crm report faults", fig)
    return [
        metric("crm_bad_file_fact_rows", fact_rows, "rows", None, "0", fact_rows == 0),
        metric("crm_bad_file_audit_named", len(results) - len(unnamed), "files", len(results), "all", not unnamed),
        metric("crm_good_file_rows", good_rows, "rows", None, "> 0 (the pipeline works)", good_rows > 0),
        *lost_db_rows("crm", lost_db),
    ], fig


def lost_db_rows(name: str, got: dict[str, Any]) -> list[dict[str, Any]]:
    code = got["exit"] if got["exit"] is not None else -1
    return [
        metric(f"{name}_db_lost_exit_code", code, "exit", None, "4 (-1: still running 30 s later)", code == 4),
        metric(f"{name}_db_lost_traceback", int(got["traceback"]), "tracebacks", None, "0", not got["traceback"]),
    ]


# ---------------------------------------------------------------- 8. Hallmark SIGKILL + --resume


def exp_hallmark(stack: Stack, sz: Sizes) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from storeflow.hallmark.auth import Authenticator
    from storeflow.sandbox.host import SandboxHost
    from storeflow.settings import load_settings

    folder = stack.work / "hallmark"
    host = SandboxHost(["hallmark"], port_base=0, seed=5)
    host.start_in_thread()
    try:
        config = folder / "sb" / "storeflow.toml"
        host.write_config(config)
        url = host.urls["hallmark"]
        httpx.post(
            f"{url}/_sandbox/hallmark", json={"rate_limit_interval": 0.02, "rate_limit_burst": 2}
        ).raise_for_status()
        env = {
            **stack.env,
            "MFA_METHOD": "totp",
            "SESSION_FILE": str(folder / "session.json"),
            "OUTPUT_DIRECTORY": str(folder / "data"),
            "RATE_LIMIT_DETAIL_SECONDS": "0.25",
            "RATE_LIMIT_JITTER_SECONDS": "0",
            "BREAK_AFTER_REQUESTS": "0",
        }
        settings = load_settings(config, env=env)
        asyncio.run(Authenticator(settings).login())  # one real Chromium login; the runs reuse the session
        sim = host.sim("hallmark")
        ids = sorted(o for o, v in sim.orders.items() if v.created is not None)[: sz.hallmark_orders]  # type: ignore[attr-defined]
        (folder / "ids.txt").write_text("\n".join(ids) + "\n")
        procs = Processes(env, folder)
        try:
            args = ["--config", str(config), "hallmark", "--orders", str(folder / "ids.txt")]
            first = procs.start(args)
            data = folder / "data"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and first.poll() is None:
                if len(list(data.rglob("order_*.json"))) >= len(ids) // 3:
                    break
                time.sleep(0.05)
            before = len(list(data.rglob("order_*.json")))
            procs.kill9(first)
            resumed = procs.start(
                ["--config", str(config), "hallmark", "--resume"], env={"RATE_LIMIT_DETAIL_SECONDS": "0.02"}
            )
            code = resumed.wait(180)
            missing, duplicate, broken = file_check(data, ids)
            # a second extraction that loses the database a third of the way (exit 4, no traceback), resumed
            for path in data.rglob("order_*.json"):
                path.unlink()
            lost_db = lose_database(
                stack,
                procs,
                [*args, "--update"],
                lambda: len(list(data.rglob("order_*.json"))) >= len(ids) // 3,
            )
            again = procs.start(
                ["--config", str(config), "hallmark", "--resume"], env={"RATE_LIMIT_DETAIL_SECONDS": "0.02"}
            )
            again_code = again.wait(180)
            tracebacks = procs.errors()
        finally:
            procs.stop_all()
    finally:
        host.stop()
    missing2, duplicate2, broken2 = file_check(folder / "data", ids)
    fig = {
        "orders": len(ids),
        "files_before_kill": before,
        "resume_exit": code,
        "missing": missing,
        "duplicate": duplicate,
        "unreadable": broken,
        "tracebacks": tracebacks,
        "db_lost_mid_run": lost_db,
        "resume_after_db_loss_exit": again_code,
        "after_db_loss_missing_duplicate_unreadable": (missing2, duplicate2, broken2),
    }
    figures_row("hallmark kill + resume", fig)
    return [
        metric("hallmark_resume_missing_files", missing, "files", len(ids), "0", missing == 0),
        metric("hallmark_resume_duplicate_files", duplicate, "files", None, "0", duplicate == 0),
        metric(
            "hallmark_resume_unreadable_files",
            broken,
            "files",
            None,
            "0 (not JSON, or not a .json file)",
            broken == 0,
        ),
        metric("hallmark_resume_exit_code", code, "exit", None, "0", code == 0),
        *lost_db_rows("hallmark", lost_db),
        metric("hallmark_resume_after_db_loss_exit", again_code, "exit", None, "0", again_code == 0),
        metric(
            "hallmark_resume_after_db_loss_missing_or_duplicate",
            missing2 + duplicate2 + broken2,
            "files",
            len(ids),
            "0",
            missing2 + duplicate2 + broken2 == 0,
        ),
    ], fig


def file_check(data: Path, ids: list[str]) -> tuple[int, int, int]:
    """(missing, duplicate, unreadable) order files: one readable order_<id>.json per id, nothing else."""
    files = list(data.rglob("order_*.json"))
    names = [p.name for p in files]
    missing = len({f"order_{i}.json" for i in ids} - set(names))
    broken = sum(1 for p in data.rglob("*") if p.is_file() and not p.name.endswith(".json"))
    for path in files:
        try:
            json.loads(path.read_text())
        except (ValueError, OSError):
            broken += 1
    return missing, len(names) - len(set(names)), broken


# ---------------------------------------------------------------- running it all

EXPERIMENTS: list[tuple[str, str, Callable[[Stack, Sizes], tuple[list[dict[str, Any]], dict[str, Any]]]]] = [
    ("1", "receiver SIGKILL under 100 webhooks/s", exp_receiver_kills),
    ("2", "worker SIGKILL during a drain", exp_worker_kills),
    ("3", "PostgreSQL fast stop and kill -9 under load", exp_postgres),
    ("4", "Hipoink 503 / latency / 429 phases", exp_hipoink),
    ("5", "duplicate storm and out-of-order edits", exp_order),
    ("6", "fuzz of bad deliveries", exp_fuzz),
    ("7", "CRM report faults", exp_crm),
    ("8", "Hallmark SIGKILL then --resume", exp_hallmark),
]


@contextlib.contextmanager
def stack_up(work: Path) -> Iterator[Stack]:
    """Private PostgreSQL, migrated database, Hipoink simulator, receiver; all stopped on the way out."""
    from storeflow.db.connect import Database
    from storeflow.db.migrate import migrate

    pg = PrivatePostgres()
    procs: Processes | None = None
    try:
        pg.init()
        with psycopg.connect(pg.url, autocommit=True) as admin:
            admin.execute("CREATE DATABASE chaos")
        db_url = psycopg.conninfo.make_conninfo(pg.url, dbname="chaos")
        db = Database(db_url)
        migrate(db)
        db.close()
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO store_mappings (source_store_id, hipoink_store_code) VALUES (%s, %s)", (SHOP, STORE)
            )
        config = work / "storeflow.toml"
        config.write_text(f"[esl]\nlease_seconds = {LEASE}\n")
        (work / "storeflow-pg.toml").write_text(f"[esl]\nlease_seconds = {PG_LEASE}\n")
        keep = ("HIPOINK_", "SHOPIFY_", "DATABASE_URL", "STOREFLOW_", "TEST_DATABASE_URL", "MAX_RETRY", "RETRY_")
        base = {k: v for k, v in os.environ.items() if not k.startswith(keep)}
        env = {
            **base,
            "DATABASE_URL": db_url,
            "STOREFLOW_CONFIG": str(config),
            "STOREFLOW_HOME": str(work / "home"),
            "STOREFLOW_ADMIN_TOKEN": ADMIN_TOKEN,
            "LOG_DIRECTORY": str(work / "logs"),
            "SHOPIFY_WEBHOOK_SECRET": SECRET,
            "APP_ENVIRONMENT": "test",
            "LOG_LEVEL": "WARNING",
        }
        procs = Processes(env, work)
        sim = procs.start(["sandbox", "up", "--only", "hipoink", "--port-base", "0"], pipe=True)
        assert sim.stdout is not None
        hipoink = json.loads(sim.stdout.readline())["hipoink"]
        from storeflow.sandbox.hipoink import sandbox_sign

        env.update(
            {"HIPOINK_API_BASE_URL": hipoink, "HIPOINK_CLIENT_ID": "default", "HIPOINK_API_SECRET": sandbox_sign(0)}
        )
        stack = Stack(pg, procs, db_url, env, hipoink, free_port(), work)
        stack.start_receiver()
        yield stack
    finally:
        if procs is not None:
            procs.stop_all()
        pg.destroy()


def write_results(rows: list[dict[str, Any]], notes: list[str], figures: dict[str, Any], name: str) -> None:
    for m in rows:  # "never" (an infinite wait) is not a JSON number
        if isinstance(m["value"], float) and not math.isfinite(m["value"]):
            m["value"], m["ratio"] = None, None
    shown = [f"- {label}: " + ", ".join(f"{k} {v}" for k, v in fig.items()) for label, fig in figures.items()]
    write_table(name, "Chaos suite (bench/chaos.py)", rows, ["Figures per experiment:", "", *shown, "", *notes])


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller runs (under 5 minutes)")
    parser.add_argument("--only", help="comma-separated experiment numbers (default all; results: chaos.partial.*)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _sigterm)
    sizes = QUICK if args.quick else FULL
    wanted = set(args.only.split(",")) if args.only else {n for n, _, _ in EXPERIMENTS}
    started = time.monotonic()
    load = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="chaos-"))
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    crashed: list[str] = []
    try:
        with stack_up(work) as stack:
            for number, title, run in EXPERIMENTS:
                if number not in wanted:
                    continue
                print(f"{number}. {title}", flush=True)
                t = time.monotonic()
                try:
                    got, fig = run(stack, sizes)
                    rows += got
                    figures[f"{number}. {title}"] = fig
                except Exception as exc:
                    traceback.print_exc()
                    crashed.append(f"{number}. {title}: {exc!r}"[:300])
                    rows.append(metric(f"experiment_{number}_ran", 0, "ok", None, "1", False))
                    stack.faults_clear()
                    stack.stop_worker()
                    if stack.receiver is None or stack.receiver.poll() is not None:
                        stack.start_receiver()
                print(f"   ({time.monotonic() - t:.0f} s)", flush=True)
            tracebacks = stack.procs.errors()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    notes = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on one machine ({os.cpu_count()} cores, load average "
        f"{load:.1f} at start), {'--quick' if args.quick else 'full'} run, {time.monotonic() - started:.0f} s. "
        "A private PostgreSQL (fsync off: only processes are killed, never the machine), `storeflow serve`, "
        "`storeflow esl worker` and `storeflow sandbox up --only hipoink` as processes; lease 5 s.",
        "Sender: Shopify-like, 5 s timeout, up to 8 retries with the same ids (back-off 0.5-4 s instead of "
        "Shopify's minutes); its CPU share is in the *_sender_cpu_share rows.",
        f"Tracebacks in process logs: {tracebacks or 'none'}.",
    ]
    if crashed:
        notes.append("Experiments that could not run: " + "; ".join(crashed))
    write_results(rows, notes, figures, "chaos.partial" if args.only else "chaos" if args.quick else "chaos.full")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
