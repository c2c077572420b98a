"""`storeflow demo`: every pipeline end to end on the sandbox and the embedded database.

Each pipeline contributes a step (see `demo_steps`): a function that takes a `DemoContext` and
returns a `DemoResult`. The CRM and Hallmark steps run as jobs in one in-process worker
(`run_demo_jobs`), as `storeflow worker` runs them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from storeflow.errors import EXIT_FAILED, EXIT_OK, ConfigError
from storeflow.sandbox.host import SandboxHost
from storeflow.sandbox.registry import SIMULATORS

if TYPE_CHECKING:
    from storeflow.context import AppContext
    from storeflow.db.connect import Database
    from storeflow.settings import Settings


@dataclass
class DemoContext:
    settings: Settings
    db: Database
    sandbox: SandboxHost
    workdir: Path
    console: Console


@dataclass
class DemoResult:
    pipeline: str
    ok: bool
    figures: list[tuple[str, str]] = field(default_factory=list)
    note: str = ""


def run_demo_jobs(ctx: DemoContext, task: str, **request: object) -> list[dict[str, Any]]:
    """Defer ``task`` (one job per store) and run it, and the jobs it defers, in one in-process worker."""
    from storeflow.jobs.app import plan
    from storeflow.jobs.worker import run_jobs, worker_options

    planned = plan(ctx.settings, task, **request)  # type: ignore[arg-type]
    return run_jobs(ctx.settings, ctx.db, planned, worker_options(ctx.settings))


def demo_steps() -> dict[str, Callable[[DemoContext], DemoResult]]:
    """Each pipeline's demo step, in the order they run."""
    # imported here: the step modules import DemoContext and DemoResult from this module
    from storeflow.crm.demo import run_demo as crm_demo
    from storeflow.esl.demo import run_demo as esl_demo
    from storeflow.hallmark.demo import run_demo as hallmark_demo

    return {"hallmark": hallmark_demo, "crm": crm_demo, "esl": esl_demo}


def run_demo(ctx: AppContext, only: str | None, seed: int, serve: bool, console: Console) -> int:
    from storeflow.db.connect import open_database
    from storeflow.logs import setup_logging
    from storeflow.settings import load_settings

    base = ctx.settings
    workdir = base.home.resolve() / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    steps = demo_steps()
    wanted = [p.strip() for p in only.split(",")] if only else list(steps)
    unknown = [name for name in wanted if name not in steps]
    if unknown:
        raise ConfigError(f"unknown demo pipeline(s): {', '.join(unknown)}; known: {', '.join(steps)}")
    console.print(f"[bold]storeflow demo[/] — sandbox simulators on 127.0.0.1, data in {workdir}")
    with SandboxHost(list(SIMULATORS), port_base=0, seed=seed) as host:
        config_path = workdir / "storeflow.toml"
        host.write_config(config_path)
        _point_paths_at(config_path, workdir)
        env = {**base.dotenv, "STOREFLOW_HOME": str(base.home)}
        if base.DATABASE_URL is not None:  # the same database as the caller's (settings are never mutated)
            env["DATABASE_URL"] = base.DATABASE_URL.get_secret_value()
        settings = load_settings(config_path, env=env)
        setup_logging(workdir / "logs", settings.LOG_LEVEL, secrets=settings.secret_values())
        db = open_database(settings)
        console.print(f"database: {db.kind}; sandbox: {', '.join(f'{k}={v}' for k, v in host.urls.items())}")
        demo_ctx = DemoContext(settings, db, host, workdir, console)
        results: list[DemoResult] = []
        for name in wanted:
            fn = steps[name]
            started = time.monotonic()
            console.print(f"[bold]→ {name}[/]")
            try:
                result = fn(demo_ctx)
            except Exception as exc:  # the demo reports every pipeline, then exits non-zero
                result = DemoResult(name, False, note=f"{type(exc).__name__}: {exc}")
            result.figures.append(("time", f"{time.monotonic() - started:.1f}s"))
            results.append(result)
        table = Table("pipeline", "status", "figures", "note", title="storeflow demo summary")
        for r in results:
            table.add_row(
                r.pipeline,
                "[green]ok[/]" if r.ok else "[red]failed[/]",
                "\n".join(f"{k}: {v}" for k, v in r.figures),
                r.note,
            )
        console.print(table)
        if serve:
            _serve_dashboard(settings, db, console)
        db.close()
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def _point_paths_at(config_path: Path, workdir: Path) -> None:
    """Keep every file the demo writes (downloads, profiles, data, sessions) inside its workdir."""
    env_path = config_path.parent / ".env"
    extra = {
        "OUTPUT_DIRECTORY": str(workdir / "data"),
        "SESSION_FILE": str(workdir / "sessions" / "hallmark_session.json"),
        "LOG_DIRECTORY": str(workdir / "logs"),
    }
    with env_path.open("a", encoding="utf-8") as fh:
        for key, value in extra.items():
            fh.write(f"{key}={value}\n")
    text = config_path.read_text(encoding="utf-8")
    if "[crm]" in text:
        text = text.replace(
            "[crm]\n",
            f'[crm]\ndownload_dir = "{workdir / "downloads"}"\nprofiles_dir = "{workdir / "profiles"}"\n',
            1,
        )
        config_path.write_text(text, encoding="utf-8")


def _serve_dashboard(settings: Settings, db: Database, console: Console) -> None:
    import uvicorn

    from storeflow.web.app import create_app
    from storeflow.web.ports import bind_port
    from storeflow.web.server import uvicorn_config

    sock = bind_port(0, "demo dashboard")
    port = sock.getsockname()[1]
    console.print(f"\n[bold]Dashboard:[/] http://127.0.0.1:{port}/dashboard   (Ctrl-C to stop)")
    console.file.flush()  # stdout to a pipe is block-buffered: `storeflow demo | tee demo.log` shows the URL now
    server = uvicorn.Server(uvicorn_config(create_app(settings, db)))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
