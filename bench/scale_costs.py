"""Unit costs for the capacity model (issue 14, docs/capacity.md): `bench/scale.py --only costs`.

What one webhook, one shelf label, one CRM store run and one Hallmark order cost on this machine. CPU is
counted from /proc (utime + stime of a process and its children), not from wall time, so the numbers say
what the work costs rather than how fast a loaded machine happened to run it.

- Per webhook: the `storeflow serve` process's CPU, the PostgreSQL server's CPU (its whole process tree:
  backends, WAL writer, checkpointer, autovacuum), WAL bytes (pg_current_wal_lsn before/after), rows written
  and index entries written (pg_stat_user_tables; index entries = (inserts + non-HOT updates) x the table's
  indexes), storage growth; for N new products (create) and then N price changes of them (update).
  Baseline: the floor app of bench/esl.py (minimal FastAPI, one INSERT per request) on the same requests.
- Per label: `storeflow esl worker --drain` (CPU from wait4, minus an empty drain: start-up and exit) and
  the same database figures while it sends the queued products to the Hipoink simulator (rate limit lifted).
- Per CRM store run: one sandbox store alone and all sandbox stores at once (crm.concurrency = 4): wall
  seconds, the browser's CPU seconds and peak memory (Playwright driver + Chromium, sampled every 0.1 s from
  /proc: RSS and PSS summed over the processes), storeflow's own CPU; ingest ms per 1,000 rows.
- Per Hallmark order (and billing document): requests the simulator counts for a bulk extraction of a date
  range (search pages, detail calls), after one login.

Everything runs on a private PostgreSQL started for the run (the embedded server, default settings, a
temporary folder), so no other work on the machine enters its CPU or WAL figures. The rows are returned to
bench/scale.py's writer (bench/results/scale.json) and also written to bench/results/scale_costs.json
(+ .md), which `bench/capacity_table.py` reads to print docs/capacity.md's table.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import psycopg
from esl import (
    _CL,
    SECRET,
    free_port,
    make_database,
    metric,
    process,
    product_body,
    signed_request,
    wait_http,
    write_table,
)

BENCH = Path(__file__).resolve().parent
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PATH = "/webhooks/shopify/products/update"
CONCURRENCY = 16
WARM = 300  # warm-up webhooks before each measured phase

# ---------------------------------------------------------------- /proc


@dataclass
class Proc:
    pid: int
    ppid: int
    comm: str
    own_ms: float  # utime + stime
    children_ms: float  # cutime + cstime: reaped descendants
    rss: int  # bytes


def read_proc(pid: int) -> Proc | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    comm = text[text.index("(") + 1 : text.rindex(")")]
    rest = text[text.rindex(")") + 2 :].split()
    return Proc(
        pid,
        int(rest[1]),
        comm,
        (int(rest[11]) + int(rest[12])) * TICK_MS,
        (int(rest[13]) + int(rest[14])) * TICK_MS,
        int(rest[21]) * PAGE,
    )


def all_procs() -> dict[int, Proc]:
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (p := read_proc(int(entry))) is not None:
            procs[p.pid] = p
    return procs


def descendants(root: int, procs: dict[int, Proc]) -> list[Proc]:
    children: dict[int, list[Proc]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def tree_cpu_ms(root: int) -> float:
    """CPU of ``root`` and every descendant, living or reaped (a reaped one is in its parent's cutime)."""
    procs = all_procs()
    tree = [procs[root], *descendants(root, procs)] if root in procs else []
    return sum(p.own_ms + p.children_ms for p in tree)


def pss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


class TreeSampler:
    """Samples this process's descendants every ``interval`` s: CPU per process, summed RSS and PSS peaks."""

    def __init__(self, exclude: int, interval: float = 0.1) -> None:
        self.exclude = exclude  # a child process that is not the browser (a simulator)
        self.interval = interval
        self.cpu: dict[int, float] = {}
        self.comm: dict[int, str] = {}
        self.peak_rss = self.peak_pss = 0
        self.first_seen: float | None = None
        self.last_seen: float | None = None
        self.own_cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            procs = all_procs()
            skip = {self.exclude} | {p.pid for p in descendants(self.exclude, procs)}
            tree = [p for p in descendants(me, procs) if p.pid not in skip]
            if tree:
                now = time.monotonic()
                self.first_seen = self.first_seen or now
                self.last_seen = now
            for p in tree:
                self.cpu[p.pid] = max(self.cpu.get(p.pid, 0.0), p.own_ms)
                self.comm[p.pid] = p.comm
            self.peak_rss = max(self.peak_rss, sum(p.rss for p in tree))
            self.peak_pss = max(self.peak_pss, sum(pss_bytes(p.pid) for p in tree))
            self._stop.wait(self.interval)
        self.own_cpu_s = time.thread_time()

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu.values()) / 1000

    @property
    def alive_s(self) -> float:
        return (self.last_seen - self.first_seen) if self.first_seen and self.last_seen else 0.0


# ---------------------------------------------------------------- a private PostgreSQL and its figures


@dataclass
class Postgres:
    home: Path
    url: str

    @property
    def postmaster(self) -> int:
        from storeflow.db.embedded import pgdata_dir

        return int((pgdata_dir(self.home) / "postmaster.pid").read_text().split()[0])


@contextlib.contextmanager
def private_postgres(work: Path) -> Iterator[Postgres]:
    from storeflow.db.embedded import start_embedded, stop_embedded

    home = work / "costs-pg"
    url = start_embedded(home)
    try:
        yield Postgres(home, url)
    finally:
        stop_embedded(home, mode="fast")
        shutil.rmtree(home, ignore_errors=True)


def lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


@dataclass
class Snapshot:
    pg_ms: float
    wal: int
    fpi: int
    tables: dict[str, tuple[int, int, int, int, int, int]]  # ins, upd, hot_upd, del, indexes, total bytes


TABLE_SQL = """
SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del,
       (SELECT count(*) FROM pg_index i WHERE i.indrelid = s.relid), pg_total_relation_size(relid)
  FROM pg_stat_user_tables s
"""


def snapshot(pg: Postgres, url: str, settle: float = 1.5) -> Snapshot:
    """The server's CPU, WAL position and table counters; ``settle`` s first, so that idle backends have
    flushed their statistics (PostgreSQL flushes them at most once a second)."""
    time.sleep(settle)
    with psycopg.connect(url, autocommit=True) as conn:
        wal = lsn(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])  # type: ignore[index]
        fpi = conn.execute("SELECT wal_fpi FROM pg_stat_wal").fetchone()[0]  # type: ignore[index]
        tables = {r[0]: tuple(int(x) for x in r[1:]) for r in conn.execute(TABLE_SQL).fetchall()}
    return Snapshot(tree_cpu_ms(pg.postmaster), wal, int(fpi), tables)  # type: ignore[arg-type]


@dataclass
class Cost:
    """What a phase cost in total; `per` divides by its units."""

    units: int
    process_ms: float
    pg_ms: float
    wal: int
    fpi: int
    rows: int
    index_entries: int
    storage: int
    by_table: dict[str, int] = field(default_factory=dict)
    count_units: int = 0  # what rows, index entries and storage are divided by (0: units)

    @classmethod
    def between(cls, a: Snapshot, b: Snapshot, units: int, process_ms: float) -> Cost:
        rows = entries = storage = 0
        by_table = {}
        for name, after in b.tables.items():
            before = a.tables.get(name, (0, 0, 0, 0, after[4], 0))
            ins, upd, hot, dele = (after[i] - before[i] for i in range(4))
            rows += ins + upd + dele
            entries += (ins + upd - hot) * after[4]
            storage += after[5] - before[5]
            if ins + upd + dele:
                by_table[name] = ins + upd + dele
        return cls(units, process_ms, b.pg_ms - a.pg_ms, b.wal - a.wal, b.fpi - a.fpi, rows, entries, storage, by_table)

    def minus(self, other: Cost) -> Cost:
        """This phase less a fixed cost measured alone (a process's start-up and exit)."""
        return Cost(
            self.units,
            self.process_ms - other.process_ms,
            self.pg_ms - other.pg_ms,
            self.wal - other.wal,
            self.fpi - other.fpi,
            self.rows - other.rows,
            self.index_entries - other.index_entries,
            self.storage - other.storage,
            self.by_table,
            self.count_units,
        )

    def counted_over(self, life: Cost) -> Cost:
        """These CPU and WAL figures with ``life``'s rows, index entries and storage (and its units)."""
        return dataclasses.replace(
            self,
            rows=life.rows,
            index_entries=life.index_entries,
            storage=life.storage,
            by_table=life.by_table,
            count_units=life.units,
        )

    def per(self, attr: str, scale: float = 1.0) -> float:
        counted = attr in ("rows", "index_entries", "storage", "by_table") and self.count_units
        return float(getattr(self, attr)) / max(self.count_units if counted else self.units, 1) * scale

    def rows_by_table(self) -> dict[str, float]:
        units = max(self.count_units or self.units, 1)
        return {t: round(v / units, 2) for t, v in self.by_table.items()}


# ---------------------------------------------------------------- webhooks and labels


async def _send_all(port: int, requests: list[bytes]) -> list[int]:
    """Send every request once over CONCURRENCY keep-alive connections; the status codes."""
    it = iter(requests)
    codes: list[int] = []

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for request in it:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if match := _CL.search(head):
                    await reader.readexactly(int(match.group(1)))
                codes.append(int(head[9:12]))
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(CONCURRENCY)))
    return codes


def send_all(port: int, requests: list[bytes]) -> tuple[int, float]:
    """(requests answered 200, seconds)."""
    started = time.perf_counter()
    codes = asyncio.run(_send_all(port, requests))
    return sum(1 for c in codes if c == 200), time.perf_counter() - started


def webhooks(first: int, n: int, price: str, day: str = "2026-01-05") -> list[bytes]:
    bodies = (product_body(i, price, prefix="COST") for i in range(first, first + n))
    return [signed_request(PATH, b.replace(b"2026-01-05T10:00:00", f"{day}T10:00:00".encode())) for b in bodies]


def drain(env: dict[str, str], cwd: Path) -> tuple[float, list[tuple[float, float]], dict[str, Any]]:
    """`storeflow esl worker --drain` to the end: its CPU ms (children included, from wait4), its CPU
    sampled every 10 ms while it ran as (unix time, ms), and its summary line."""
    out, err = cwd / f"worker-{uuid.uuid4().hex[:6]}.out", cwd / "worker.err"
    samples: list[tuple[float, float]] = []
    with out.open("w") as stdout, err.open("a") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "storeflow", "esl", "worker", "--drain"],
            env=env,
            cwd=cwd,
            stdout=stdout,
            stderr=stderr,
        )
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if (p := read_proc(proc.pid)) is not None:
                samples.append((time.time(), p.own_ms + p.children_ms))
            time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed ({proc.returncode}): {err.read_text()[-2000:]}")
    summary = json.loads(out.read_text().strip().splitlines()[-1])
    return (usage.ru_utime + usage.ru_stime) * 1000, samples, summary


FIRST_CLAIM_SQL = (
    "SELECT extract(epoch FROM min(claimed_at))::float FROM sync_queue WHERE claimed_at >= to_timestamp(%s)"
)


def cpu_at(samples: list[tuple[float, float]], moment: float) -> float:
    """The last sampled CPU at or before ``moment`` (0 before the first sample)."""
    return max((ms for t, ms in samples if t <= moment), default=0.0)


def succeeded(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT count(*) FROM sync_queue WHERE state = 'succeeded'").fetchone()[0])  # type: ignore[index]


def esl_costs(run: Any, pg: Postgres, url: str, n: int) -> dict[str, Any]:
    env = {**run.env, "DATABASE_URL": url, "SHOPIFY_WEBHOOK_SECRET": SECRET}
    cwd = run.work
    sim_cmd = [sys.executable, "-m", "storeflow", "sandbox", "up", "--only", "hipoink", "--port-base", "0"]
    out: dict[str, Any] = {}

    def webhook_phase(label: str, cmd: list[str], port: int, warm: list[bytes], requests: list[bytes]) -> Cost:
        """CPU and WAL over ``requests`` alone (after ``warm``); rows, index entries and storage over the
        server's whole life, read after it stopped: a backend flushes its statistics when it exits, while
        an idle one may hold them for 10 s."""
        life = snapshot(pg, url, settle=0.3)
        with process(cmd, env, cwd) as server:
            wait_http(f"http://127.0.0.1:{port}/health")
            send_all(port, warm)
            a, cpu = snapshot(pg, url, settle=0.5), tree_cpu_ms(server.pid)
            ok, seconds = send_all(port, requests)
            cpu = tree_cpu_ms(server.pid) - cpu
            b = snapshot(pg, url, settle=0.3)
            assert server.poll() is None
        out[f"{label}_rate"], out[f"{label}_non_200"] = ok / seconds, len(requests) - ok
        counts = Cost.between(life, snapshot(pg, url, settle=0.3), ok + len(warm), 0)
        return Cost.between(a, b, ok, cpu).counted_over(counts)

    with process(sim_cmd, env, cwd) as sim:
        assert sim.stdout is not None
        hipoink = json.loads(sim.stdout.readline())["hipoink"]
        from storeflow.sandbox.hipoink import sandbox_sign

        wenv = {
            **env,
            "HIPOINK_API_BASE_URL": hipoink,
            "HIPOINK_CLIENT_ID": "default",
            "HIPOINK_API_SECRET": sandbox_sign(0),
            "HIPOINK_RATE_LIMIT_PER_SECOND": "100000",  # lifted: the worker's own cost, not the pacing
        }

        def label_phase(label: str) -> Cost:
            """The worker's CPU from its first claim to its exit (its start-up, importing and connecting,
            varies by more than a quick run's labels cost on a loaded machine); the database's figures
            over the whole drain, less an empty drain's."""
            done, hip = succeeded(url), httpx.get(f"{hipoink}/_sandbox/state").json()["requests"]
            a = snapshot(pg, url, settle=0.3)
            began = time.time()
            cpu, samples, summary = drain(wenv, cwd)
            with psycopg.connect(url) as conn:
                first = conn.execute(FIRST_CLAIM_SQL, (began,)).fetchone()[0]  # type: ignore[index]
            start_ms = cpu_at(samples, first) if first is not None else cpu
            out[f"{label}_startup_ms"] = start_ms
            cost = Cost.between(a, snapshot(pg, url, settle=0.3), succeeded(url) - done, cpu - start_ms)
            out[f"{label}_hipoink_requests"] = httpx.get(f"{hipoink}/_sandbox/state").json()["requests"] - hip
            out[f"{label}_summary"] = summary
            return cost

        empty = dataclasses.replace(label_phase("empty"), process_ms=0.0)
        port = free_port()
        serve = [sys.executable, "-m", "storeflow", "serve", "--port", str(port)]
        for label, price, day in (("create", "9.99", "2026-01-05"), ("update", "10.99", "2026-01-06")):
            warm = webhooks(10**6, WARM, price, day)  # pools, plans, code paths; the same kind of change
            t = time.monotonic()
            out[f"webhook_{label}"] = webhook_phase(f"webhook_{label}", serve, port, warm, webhooks(0, n, price, day))
            out[f"label_{label}"] = label_phase(label).minus(empty)
            print(f"  {label}: {time.monotonic() - t:.0f} s", flush=True)
        out["labels_at_hipoink"] = httpx.get(f"{hipoink}/_sandbox/state").json()["stores"].get("B01", 0)
    floor_port = free_port()
    floor_cmd = [sys.executable, str(BENCH / "esl.py"), "--floor-server", str(floor_port), url, "none"]
    warm = webhooks(10**6, WARM, "11.99", "2026-01-07")
    out["floor"] = webhook_phase("floor", floor_cmd, floor_port, warm, webhooks(0, n, "11.99", "2026-01-07"))
    out["empty"] = empty
    return out


# ---------------------------------------------------------------- CRM store runs and ingest


def crm_costs(run: Any, pg: Postgres, url: str, rows: int) -> dict[str, Any]:
    from crm import make_rows, write_report

    from storeflow.crm.ingest import FileInfo, ingest_file
    from storeflow.crm.progress import Progress
    from storeflow.crm.runner import DownloadOptions, run_bootstrap, run_download
    from storeflow.db import connect
    from storeflow.db.connect import Database
    from storeflow.settings import load_settings

    out: dict[str, Any] = {}
    path = run.work / "TD_OrderReport_costs.xlsx"
    write_report(path, make_rows(rows))
    info = FileInfo(uuid.uuid4(), "td", "a668", "OrderReport", "bench", date(2020, 1, 1), date(2020, 12, 31))
    a = snapshot(pg, url, settle=0)
    with connect(url) as conn:
        t, cpu = time.perf_counter(), time.thread_time()
        result = ingest_file(conn, path, info)
        wall, cpu = time.perf_counter() - t, time.thread_time() - cpu
    assert result.status == "ok" and result.inserted == rows, result
    out["ingest"] = Cost.between(a, snapshot(pg, url), rows, cpu * 1000)
    out["ingest_wall_s"] = wall

    config = run.work / "crm-sb" / "storeflow.toml"
    sim_cmd = [sys.executable, "-m", "storeflow", "sandbox", "up", "--only", "tumbledry,uclean", "--port-base", "0",
               "--seed", "3", "--write-config", str(config)]  # fmt: skip
    with process(sim_cmd, run.env, run.work) as sim:
        assert sim.stdout is not None
        urls = json.loads(sim.stdout.readline())
        for base in urls.values():  # what bench/crm.py assumes a portal takes to build a report
            httpx.post(f"{base}/_sandbox/settings", json={"report_delay": 3.0}).raise_for_status()
        settings = load_settings(config, env={})
        settings.config.crm.profiles_dir = run.work / "crm-profiles"
        settings.config.crm.download_dir = run.work / "crm-downloads"
        stores = settings.config.crm.stores
        boot = asyncio.run(run_bootstrap(settings, stores, None, True, False))
        assert all(o.status == "ok" for o in boot), boot
        db = Database(url)
        try:
            # every store through a page (TumbleDry "browser", UClean "export"), so each one in flight has a context
            paged = [st.model_copy(update={"mode": "browser" if st.crm == "td" else "export"}) for st in stores]
            for label, chosen, day in (("one", paged[:1], "2025-11-10"), ("all", paged, "2025-11-11")):
                settings.config.crm.concurrency = 4
                opts = DownloadOptions(start=day, end=day, headless=True, alert=False, command="bench")
                cpu, t = time.process_time(), time.perf_counter()
                with TreeSampler(exclude=sim.pid) as sampler:
                    summary = asyncio.run(run_download(settings, db, chosen, opts, Progress([s.key for s in chosen])))
                wall, cpu = time.perf_counter() - t, time.process_time() - cpu - sampler.own_cpu_s
                assert summary.exit_code == 0, [o.as_dict() for o in summary.outcomes]
                browsers = {c for c in sampler.comm.values()}
                out[f"run_{label}"] = {
                    "stores": len(chosen),
                    "modes": sorted({s.mode for s in chosen}),
                    "wall_s": wall,
                    "browser_alive_s": sampler.alive_s,
                    "browser_cpu_s": sampler.cpu_s,
                    "storeflow_cpu_s": cpu,
                    "peak_rss_mb": sampler.peak_rss / 2**20,
                    "peak_pss_mb": sampler.peak_pss / 2**20,
                    "processes": len(sampler.cpu),
                    "comms": sorted(browsers),
                }
                print(f"  crm {label}: {out[f'run_{label}']}", flush=True)
        finally:
            db.close()
    return out


# ---------------------------------------------------------------- Hallmark requests per order


def hallmark_costs(run: Any, url: str, orders: int) -> dict[str, Any]:
    from storeflow.db.connect import Database
    from storeflow.hallmark.auth import Authenticator
    from storeflow.hallmark.extract import Extractor, ExtractRequest
    from storeflow.sandbox.host import SandboxHost
    from storeflow.settings import load_settings

    host = SandboxHost(["hallmark"], port_base=0, seed=3)
    host.start_in_thread()
    out: dict[str, Any] = {}
    db = Database(url)
    try:
        sim: Any = host.sim("hallmark")
        sim.rate_limit_interval = 0.0
        config = run.work / "hm-sb" / "storeflow.toml"
        host.write_config(config)
        env = {
            **run.env,
            "SESSION_FILE": str(run.work / "hm-session.json"),
            "OUTPUT_DIRECTORY": str(run.work / "hm-out"),
            "RATE_LIMIT_DETAIL_SECONDS": "0.001",
            "RATE_LIMIT_SEARCH_SECONDS": "0.001",
            "RATE_LIMIT_JITTER_SECONDS": "0",
            "BREAK_AFTER_REQUESTS": "0",
        }
        settings = load_settings(config, env=env)
        before = sim.requests
        asyncio.run(Authenticator(settings).session())
        out["login_requests"] = sim.requests - before
        days = sorted((o.created for o in sim.orders.values() if o.created), reverse=True)
        end, start = days[0], days[min(orders, len(days)) - 1]
        for kind in ("bulk-orders", "bulk-billing-documents"):
            before, aura, actions = sim.requests, sim.counters.aura_requests, dict(sim.counters.by_action)
            request = ExtractRequest(kind=kind, start=start, end=end)  # type: ignore[arg-type]
            summary = asyncio.run(Extractor(settings, db, Authenticator(settings)).run(request))
            assert summary.status == "ok" and summary.failed == 0, summary
            out[kind] = {
                "items": summary.downloaded,
                "requests": sim.requests - before,
                "aura_requests": sim.counters.aura_requests - aura,
                "logins": summary.logins,
                "by_action": {
                    k: v - actions.get(k, 0) for k, v in sim.counters.by_action.items() if v - actions.get(k, 0)
                },
                "window": f"{start}..{end}",
            }
            print(f"  hallmark {kind}: {out[kind]}", flush=True)
    finally:
        db.close()
        host.stop()
    return out


# ---------------------------------------------------------------- the experiment


def info(name: str, value: float, unit: str, note: str = "informative") -> dict[str, Any]:
    return metric(name, value, unit, None, f"({note})", None)


def unit_costs(run: Any) -> list[dict[str, Any]]:
    """The experiment bench/scale.py runs as ``costs``."""
    n = 2000 if run.quick else 20_000
    crm_rows = 10_000 if run.quick else 100_000
    orders = 60 if run.quick else 400
    started = time.monotonic()
    print(f"costs. {n} webhooks (create, then update), their labels, CRM store runs, Hallmark orders", flush=True)
    with private_postgres(run.work) as pg:
        url = make_database(pg.url)
        with psycopg.connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            keys = ("fsync", "synchronous_commit", "full_page_writes")
            durability = {k: conn.execute(f"SHOW {k}").fetchone()[0] for k in keys}  # type: ignore[index]
        esl = esl_costs(run, pg, url, n)
        print(f"  webhooks and labels: {time.monotonic() - started:.0f} s", flush=True)
        crm = crm_costs(run, pg, url, crm_rows)
        print(f"  + CRM: {time.monotonic() - started:.0f} s", flush=True)
        hm = hallmark_costs(run, url, orders)
    rows: list[dict[str, Any]] = []
    floor = esl["floor"]
    for label in ("update", "create"):
        w: Cost = esl[f"webhook_{label}"]
        lb: Cost = esl[f"label_{label}"]
        p = "webhook" if label == "update" else "webhook_create"
        q = "label" if label == "update" else "label_create"
        rows += [
            metric(f"{p}_receiver_cpu_ms", w.per("process_ms"), "ms/webhook", floor.per("process_ms"),
                   "(baseline: floor app, one INSERT)", None),
            metric(f"{p}_pg_cpu_ms", w.per("pg_ms"), "ms/webhook", floor.per("pg_ms"),
                   "(baseline: floor app, one INSERT)", None),
            metric(f"{p}_wal_bytes", w.per("wal"), "B/webhook", floor.per("wal"), "(baseline: floor app, one INSERT)",
                   None),
            info(f"{p}_rows_written", w.per("rows"), "rows/webhook"),
            info(f"{p}_index_entries", w.per("index_entries"), "entries/webhook"),
            info(f"{p}_storage_bytes", w.per("storage"), "B/webhook", "informative: table + index growth"),
            info(f"{p}_rate", esl[f"webhook_{label}_rate"], "webhooks/s", "informative: this machine, as loaded"),
            info(f"{q}_worker_cpu_ms", lb.per("process_ms"), "ms/label"),
            info(f"{q}_pg_cpu_ms", lb.per("pg_ms"), "ms/label"),
            info(f"{q}_wal_bytes", lb.per("wal"), "B/label"),
            info(f"{q}_rows_written", lb.per("rows"), "rows/label"),
            info(f"{q}_index_entries", lb.per("index_entries"), "entries/label"),
            info(f"{q}_storage_bytes", lb.per("storage"), "B/label", "informative: table + index growth"),
            info(f"{q}_per_hipoink_request", lb.units / max(esl[f"{label}_hipoink_requests"], 1), "labels/req"),
        ]  # fmt: skip
    delivered = esl["labels_at_hipoink"]
    expected = n + WARM
    all_ok = delivered == expected and esl["webhook_create_non_200"] == esl["webhook_update_non_200"] == 0
    rows.append(metric("costs_labels_delivered", delivered, "labels", float(expected), f"= {expected}", all_ok))
    one, every = crm["run_one"], crm["run_all"]
    k = every["stores"]
    ingest: Cost = crm["ingest"]
    rows += [
        info("crm_store_run_wall_s", one["wall_s"], "s/run", "informative: 1 store alone, 3 s report build"),
        info("crm_store_run_browser_alive_s", one["browser_alive_s"], "s/run", "informative: 1 store alone"),
        info("crm_store_run_browser_cpu_s", one["browser_cpu_s"], "CPU s/run", "informative: 1 store alone"),
        info("crm_store_run_storeflow_cpu_s", one["storeflow_cpu_s"], "CPU s/run", "informative: 1 store alone"),
        info("crm_store_run_browser_pss_peak_mb", one["peak_pss_mb"], "MB", "informative: 1 store alone"),
        info("crm_store_run_browser_rss_peak_mb", one["peak_rss_mb"], "MB", "informative: 1 store alone"),
        info(f"crm_{k}_stores_wall_s", every["wall_s"], "s/run", f"informative: {k} stores at once"),
        info("crm_store_run_shared_cpu_s", (every["browser_cpu_s"] + every["storeflow_cpu_s"]) / k, "CPU s/store",
             f"informative: {k} stores at once, browser + storeflow"),
        info(f"crm_{k}_stores_browser_pss_peak_mb", every["peak_pss_mb"], "MB", f"informative: {k} stores at once"),
        info("crm_browser_pss_mb_per_extra_store", (every["peak_pss_mb"] - one["peak_pss_mb"]) / (k - 1), "MB",
             f"informative: ({k} stores - 1 store) / {k - 1}"),
        info("crm_ingest_ms_per_1000_rows", ingest_ms := crm["ingest_wall_s"] * 1000 / (crm_rows / 1000), "ms",
             f"informative: {crm_rows} rows, wall"),
        info("crm_ingest_cpu_ms_per_1000_rows", ingest.per("process_ms", 1000), "CPU ms", "informative: storeflow"),
        info("crm_ingest_pg_cpu_ms_per_1000_rows", ingest.per("pg_ms", 1000), "CPU ms", "informative: PostgreSQL"),
        info("crm_ingest_wal_bytes_per_row", ingest.per("wal"), "B/row"),
    ]  # fmt: skip
    orders_run, billing = hm["bulk-orders"], hm["bulk-billing-documents"]
    rows += [
        info("hallmark_requests_per_order", orders_run["requests"] / orders_run["items"], "req/order"),
        info("hallmark_requests_per_billing_document", billing["requests"] / max(billing["items"], 1), "req/document"),
        info("hallmark_login_requests", hm["login_requests"], "req/login"),
    ]
    w, lb = esl["webhook_update"], esl["label_update"]
    comms = sorted(set(one["comms"]) | set(every["comms"]))
    notes = [
        f"costs. Private PostgreSQL {version} (embedded, {durability}), nothing else connected. CPU = utime + "
        f"stime from /proc (children included, {TICK_MS:g} ms ticks); PostgreSQL CPU = its whole process tree. "
        f"Webhooks: {n} distinct signed products/update (one product, one variant -> one label each) over "
        f"{CONCURRENCY} keep-alive connections to a fresh `storeflow serve`, after {WARM} warm-up ones of the same "
        f"kind: first new products (*_create rows, {esl['webhook_create_rate']:.0f}/s), then a price change of each "
        f"(the webhook_* rows, {esl['webhook_update_rate']:.0f}/s). CPU and WAL over the measured webhooks; rows, "
        "index entries (= (inserts + non-HOT updates) x the table's index count, partial indexes counted as full) "
        "and storage over the receiver's life incl. warm-up, read after it stopped (backends flush statistics on "
        f"exit). Rows per webhook (update) by table: {w.rows_by_table()}; full-page images in its WAL {w.fpi} "
        f"(no checkpoint ran: steady state adds them). Baseline: bench/esl.py's floor app on the same kind of "
        f"requests ({esl['floor_rate']:.0f}/s).",
        f"costs. Labels: `storeflow esl worker --drain` (default batch and lanes, rate limit lifted) after each "
        f"webhook phase, its CPU from wait4 less its CPU at its first claim "
        f"(sampled every 10 ms; start-up {esl['update_startup_ms']:.0f} ms), the database's figures less an empty "
        f"drain's ({esl['empty'].pg_ms:.0f} ms PostgreSQL CPU, {esl['empty'].wal} B WAL); each drain also "
        f"sends the {WARM} warm-up products. Rows per label (update) by table: {lb.rows_by_table()}; "
        f"worker summary {esl['update_summary']}.",
        f"costs. CRM: the sandbox TumbleDry/UClean simulators (report build 3 s, as bench/crm.py), stores "
        f"bootstrapped first; one store alone ({one['modes']}) then all {k} ({every['modes']}) at crm.concurrency=4, "
        f"one browser per run. Browser = every child process of the bench ({comms}), "
        f"sampled every 0.1 s (CPU per process, RSS and PSS summed); {k} stores: {every['wall_s']:.1f} s, browser "
        f"{every['browser_cpu_s']:.1f} CPU s, storeflow {every['storeflow_cpu_s']:.1f} CPU s, PSS peak "
        f"{every['peak_pss_mb']:.0f} MB. Ingest: one {crm_rows}-row TumbleDry order report, fresh, "
        f"{ingest_ms * crm_rows / 1e6:.2f} s.",
        f"costs. Hallmark: simulator request counter (every request outside /_sandbox) for a bulk extraction "
        f"({orders_run['window']}, no deliveries) after one login; orders {orders_run}; billing {billing}.",
        f"costs: {time.monotonic() - started:.0f} s.",
    ]  # fmt: skip
    run.notes.extend(notes)
    write_table(
        "scale_costs",
        "Unit costs for the capacity model (bench/scale.py --only costs)",
        rows,
        [m for m in run.notes if m.startswith(("Measured", "costs"))],
    )
    return rows
