"""Benchmark for issue 12 (jobs on procrastinate): the same CRM work in the foreground and through workers.

16 sandbox TumbleDry stores (`sandbox up --stores 16`), one day each, every simulated portal taking
--report-delay seconds to build a report, every store in browser mode (--mode):

  (a) `crm_download download --crm td --store all` in the foreground, crm.concurrency 4 (today's way);
  (b) one `storeflow worker --queues crm --browsers 4` process (4 CRM jobs at once), crm.concurrency 4;
  (c) two `storeflow worker --queues crm --browsers 2` processes, crm.concurrency 2 each.

(b) and (c) are timed from `storeflow jobs run crm.download --crm td --store all --from D --to D --wait`
to its exit, with the workers already registered (their browser starts on the first job, as in (a)).
Each run gets a fresh database cloned from one migrated template; every store's facts are compared
with /_sandbox/truth after each run. Reported: wall time, per-store p50/p99 (each store's own download
+ ingest time, from pipeline_runs), jobs retried (procrastinate_events), the slowest store.
Targets: (c) <= 1.1x (b); (b) <= 1.05x (a); no store slower than 60 s; every store's facts equal truth.

Usage: python bench/jobs.py [--quick] [--stores 16] [--report-delay S] [--repeat N] [--database-url URL]
(database: --database-url, else $TEST_DATABASE_URL, else 127.0.0.1:5432, else an embedded server started
and stopped by the run). --quick: one run of each (report delay 1.5 s) instead of the median of three.
Every process and database it starts is stopped/dropped at the end, also on Ctrl-C or SIGTERM.
Writes bench/results/jobs.json and bench/results/jobs.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql
from psycopg.rows import dict_row

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from esl import metric, percentile, server_url_from_args, write_table  # noqa: E402

DAY = "2025-11-10"
BIN = Path(sys.executable).parent
STOP_SECONDS = 60  # a worker finishing the job in hand on SIGTERM, then SIGKILL
# procrastinate workers one `storeflow worker --queues crm` process registers: the browser worker (crm)
# and the one for the other queues (maintenance, always served); see jobs/worker.py
WORKERS_PER_PROCESS = 2


@dataclass
class Run:
    scenario: str
    wall: float
    per_store: list[float] = field(default_factory=list)
    retried: int = 0
    failed_jobs: int = 0
    matching: int = 0
    stores: int = 0
    duplicates: int = 0
    exit_code: int = 0
    problems: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- processes


def _stop(proc: subprocess.Popen[Any], seconds: float = STOP_SECONDS) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def started(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> Iterator[subprocess.Popen[str]]:
    """A process whose output goes to ``log``; SIGTERM (then SIGKILL) when the block ends."""
    with log.open("a") as out:
        proc = subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True)
        try:
            yield proc
        finally:
            _stop(proc)


@contextlib.contextmanager
def sandbox(work: Path, stores: int, report_delay: float, env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    """`storeflow sandbox up` with only TumbleDry, ``stores`` stores; yields its URL and the written config."""
    config = work / "sb" / "storeflow.toml"
    args = [str(BIN / "storeflow"), "sandbox", "up", "--only", "tumbledry", "--port-base", "0",
            "--stores", str(stores), "--report-delay", str(report_delay), "--write-config", str(config)]  # fmt: skip
    proc = subprocess.Popen(args, env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"sandbox did not start (exit {proc.wait()})")
        yield json.loads(line)["tumbledry"], config
    finally:
        _stop(proc, 20)


def scenario_config(base: Path, name: str, concurrency: int, mode: str, work: Path) -> Path:
    """The sandbox's TOML with this scenario's browser concurrency and every store in ``mode``; beside the
    sandbox's `.env` (its credentials), so the CLI reads both."""
    import tomli_w

    config = tomllib.loads(base.read_text())
    crm = config["crm"]
    crm.update(concurrency=concurrency, profiles_dir=str(work / "profiles"), download_dir=str(work / f"dl-{name}"))
    for store in crm["stores"]:
        store["mode"] = mode
    path = base.parent / f"{name}.toml"
    path.write_text(tomli_w.dumps(config))
    return path


# ---------------------------------------------------------------- databases


def make_template(server: str, env: dict[str, str], cwd: Path) -> str:
    """A database migrated by `storeflow db migrate` (storeflow's and procrastinate's schema)."""
    name = f"bench_jobs_tpl_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = psycopg.conninfo.make_conninfo(server, dbname=name)
    subprocess.run([str(BIN / "storeflow"), "db", "migrate"], env={**env, "DATABASE_URL": url}, cwd=cwd,
                   check=True, capture_output=True)  # fmt: skip
    return name


def clone(server: str, template: str) -> tuple[str, str]:
    name = f"bench_jobs_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return psycopg.conninfo.make_conninfo(server, dbname=name), name


def drop(server: str, name: str) -> None:
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def wait_workers(url: str, n: int, procs: list[subprocess.Popen[str]], timeout: float = 120) -> None:
    """Until ``n`` procrastinate workers have registered in procrastinate_workers (they do at start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a worker exited with {proc.returncode} before registering")
        with contextlib.suppress(psycopg.Error), psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
            if row and row[0] >= n:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{n} worker(s) did not register within {timeout:.0f} s")


# ---------------------------------------------------------------- one run


def measure(url: str, sim_url: str, run: Run) -> Run:
    """Per-store seconds, retries, failed jobs and facts against /_sandbox/truth, from the run's database."""
    truth = httpx.get(f"{sim_url}/_sandbox/truth", params={"store": "all", "from": DAY, "to": DAY}).json()["stores"]
    run.stores = len(truth)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        for row in conn.execute(
            "SELECT s->>'store' AS store, (s->>'seconds')::float AS seconds, s->>'status' AS status"
            " FROM pipeline_runs, jsonb_array_elements(summary->'stores') s WHERE pipeline = 'crm'"
        ).fetchall():
            run.per_store.append(row["seconds"])
            if row["status"] != "ok":
                run.problems.append(f"{row['store']}: {row['status']}")
        facts = {
            r["store_code"]: (r["n"], round(float(r["amount"]), 2))
            for r in conn.execute(
                "SELECT store_code, count(*) AS n, sum(net_amount) AS amount FROM fact_td_orders GROUP BY 1"
            ).fetchall()
        }
        dup = conn.execute(
            "SELECT count(*) - count(DISTINCT (store_code, order_number)) AS n FROM fact_td_orders"
        ).fetchone()
        run.duplicates = int(dup["n"]) if dup else 0
        if conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS p").fetchone()["p"]:  # type: ignore[index]
            from storeflow.jobs import queries

            counts = queries.retried_counts(conn, "crm.download")
            run.retried = counts["automatic"] + counts["manual"]
            run.failed_jobs = sum(n for (_q, status), n in queries.job_counts(conn).items() if status == "failed")
            if not run.per_store:  # no per-store summary: each job's own attempt time, from its events
                run.per_store = [v for d in queries.job_durations(conn) if d.task == "crm.download" for v in d.values]
    for code, want in truth.items():
        got = facts.get(code)
        if got == (want["rows"], want["net_amount"]):
            run.matching += 1
        else:
            run.problems.append(f"{code}: facts {got} != truth {(want['rows'], want['net_amount'])}")
    return run


def run_foreground(env: dict[str, str], config: Path, url: str, work: Path) -> Run:
    args = [str(BIN / "crm_download"), "download", "--crm", "td", "--store", "all", "--from", DAY, "--to", DAY,
            "--headless"]  # fmt: skip
    t = time.perf_counter()
    done = subprocess.run(args, env={**env, "DATABASE_URL": url, "STOREFLOW_CONFIG": str(config)}, cwd=work,
                          capture_output=True, text=True)  # fmt: skip
    run = Run("a", time.perf_counter() - t, exit_code=done.returncode)
    if done.returncode:
        run.problems.append(f"crm_download exit {done.returncode}: {done.stderr[-400:]}")
    return run


def run_workers(
    name: str, workers: int, concurrency: int, env: dict[str, str], config: Path, url: str, work: Path
) -> Run:
    wenv = {**env, "DATABASE_URL": url, "STOREFLOW_CONFIG": str(config)}
    with contextlib.ExitStack() as stack:
        worker = [str(BIN / "storeflow"), "worker", "--queues", "crm", "--browsers", str(concurrency)]
        procs = [
            stack.enter_context(started(worker, wenv, work, work / f"worker-{name}-{i}.log")) for i in range(workers)
        ]
        wait_workers(url, workers * WORKERS_PER_PROCESS, procs)
        args = [str(BIN / "storeflow"), "jobs", "run", "crm.download", "--crm", "td", "--store", "all",
                "--from", DAY, "--to", DAY, "--wait"]  # fmt: skip
        t = time.perf_counter()
        done = subprocess.run(args, env=wenv, cwd=work, capture_output=True, text=True)
        run = Run(name, time.perf_counter() - t, exit_code=done.returncode)
        if done.returncode:
            run.problems.append(f"jobs run exit {done.returncode}: {done.stderr[-400:]}")
    return run


# ---------------------------------------------------------------- report


def summarise(runs: dict[str, list[Run]], args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str]]:
    wall = {k: statistics.median(r.wall for r in v) for k, v in runs.items()}
    every = {k: [s for r in v for s in r.per_store] for k, v in runs.items()}
    n = args.stores
    label = {"a": "(a) foreground crm_download, concurrency 4", "b": "(b) 1 worker x 4 browsers",
             "c": "(c) 2 workers x 2 browsers"}  # fmt: skip
    rows = [
        metric(f"{label['a']}: wall time, {n} stores", wall["a"], "s", None, "(informative)", None),
        metric(f"{label['b']}: wall time (vs a)", wall["b"], "s", wall["a"], "<= 1.05x (a)",
               wall["b"] <= 1.05 * wall["a"]),
        metric(f"{label['c']}: wall time (vs b)", wall["c"], "s", wall["b"], "<= 1.1x (b)",
               wall["c"] <= 1.1 * wall["b"]),
    ]  # fmt: skip
    for key in ("a", "b", "c"):
        values = every[key] or [float("nan")]
        rows.append(metric(f"{label[key]}: per-store p50", percentile(values, 50), "s", None, "(informative)", None))
        rows.append(metric(f"{label[key]}: per-store p99", percentile(values, 99), "s", None, "(informative)", None))
    for key in ("b", "c"):
        retried = sum(r.retried for r in runs[key])
        rows.append(metric(f"{label[key]}: jobs retried", retried, "jobs", None, "(informative: 0 expected)", None))
    slowest = max((s for v in every.values() for s in v), default=float("inf"))
    rows.append(metric("slowest store, every run", slowest, "s", None, "<= 60 s", slowest <= 60))
    total = sum(r.stores for v in runs.values() for r in v)
    matching = sum(r.matching for v in runs.values() for r in v)
    clean = all(r.duplicates == 0 and r.failed_jobs == 0 and r.exit_code == 0 for v in runs.values() for r in v)
    rows.append(metric("store-runs whose facts equal /_sandbox/truth (no duplicates, no failed job, exit 0)",
                       matching, "store-runs", total, f"all {total}", matching == total and clean))  # fmt: skip
    notes = [
        f"Command: `python bench/jobs.py{' --quick' if args.quick else ''} --stores {n} --report-delay "
        f"{args.report_delay:g} --repeat {args.repeat}` on {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; mode {args.mode}; one day ({DAY}) per store; "
        f"wall times are the median of {args.repeat} run(s) of each, interleaved a, b, c.",
        "Per-store seconds are each store's own download + ingest (pipeline_runs summary); (b) and (c) are timed "
        "from `storeflow jobs run ... --wait` to its exit with the workers already registered.",
    ]
    for key, v in runs.items():
        for r in v:
            if r.problems:
                notes.append(f"- run {key}: " + "; ".join(r.problems[:6]))
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one run of each, report delay 1.5 s (minutes)")
    parser.add_argument("--stores", type=int, default=16)
    parser.add_argument("--report-delay", type=float, default=None, help="seconds per report (default 3, quick 1.5)")
    parser.add_argument("--repeat", type=int, default=None, help="runs of each scenario (default 3, quick 1)")
    parser.add_argument("--mode", default="browser", choices=["browser", "api"], help="every store's CRM mode")
    parser.add_argument("--scenarios", default="a,b,c", help=argparse.SUPPRESS)  # a subset, while debugging
    parser.add_argument("--database-url", help="PostgreSQL server (default: TEST_DATABASE_URL, :5432, embedded)")
    args = parser.parse_args()
    args.report_delay = args.report_delay if args.report_delay is not None else (1.5 if args.quick else 3.0)
    args.repeat = args.repeat or (1 if args.quick else 3)
    previous = signal.signal(signal.SIGTERM, lambda s, f: sys.exit(128 + s))  # unwind: stop what we started
    try:
        with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-jobs-") as tmp:
            work = Path(tmp)
            server = server_url_from_args(args.database_url, work / "pg", stack)
            env = {**os.environ, "LOG_DIRECTORY": str(work / "logs"), "HEADLESS_MODE": "true"}
            env.pop("STOREFLOW_CONFIG", None)
            sim_url, base = stack.enter_context(sandbox(work, args.stores, args.report_delay, env))
            configs = {
                "a": scenario_config(base, "a", 4, args.mode, work),
                "b": scenario_config(base, "b", 4, args.mode, work),
                "c": scenario_config(base, "c", 2, args.mode, work),
            }
            boot = subprocess.run(
                [str(BIN / "crm_download"), "bootstrap", "--crm", "td", "--store", "all", "--headless"],
                env={**env, "STOREFLOW_CONFIG": str(configs["a"])}, cwd=work, capture_output=True, text=True,
            )  # fmt: skip
            if boot.returncode:
                raise SystemExit(f"bootstrap failed (exit {boot.returncode}): {boot.stderr[-800:]}")
            template = make_template(server, env, work)
            stack.callback(drop, server, template)
            runs: dict[str, list[Run]] = {"a": [], "b": [], "c": []}
            for i in range(args.repeat):
                for key in [k for k in ("a", "b", "c") if k in args.scenarios.split(",")]:
                    url, name = clone(server, template)
                    try:
                        if key == "a":
                            run = run_foreground(env, configs["a"], url, work)
                        else:
                            workers, concurrency = (1, 4) if key == "b" else (2, 2)
                            run = run_workers(key, workers, concurrency, env, configs[key], url, work)
                        runs[key].append(measure(url, sim_url, run))
                    finally:
                        drop(server, name)
                    r = runs[key][-1]
                    print(f"  run {i + 1} ({key}): {r.wall:.1f}s, {r.matching}/{r.stores} stores match truth, "
                          f"retried {r.retried}, slowest store {max(r.per_store, default=0):.1f}s"
                          + (f"; {r.problems[:3]}" if r.problems else ""), file=sys.stderr)  # fmt: skip
            if not all(runs.values()):
                print(json.dumps({k: [vars(r) for r in v] for k, v in runs.items()}, indent=1, default=str))
                return
            rows, notes = summarise(runs, args)
    finally:
        signal.signal(signal.SIGTERM, previous)
    write_table("jobs", "Jobs benchmark (issue 12): the same CRM work in the foreground and through workers", rows,
                notes)  # fmt: skip


if __name__ == "__main__":
    main()
