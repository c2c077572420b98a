"""Per-store progress: a live table on a terminal, plain log lines otherwise."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from storeflow.logs import get_logger

STYLES = {
    "ok": "green",
    "duplicate": "cyan",
    "empty": "yellow",
    "failed": "red",
    "needs_bootstrap": "magenta",
    "skipped": "yellow",
}


class Progress:
    """Plain progress: one log line per step (cron, pipes, CI)."""

    def __init__(self, keys: list[str], console: Console | None = None) -> None:
        self.keys = keys
        self.steps: dict[str, tuple[str, str, float]] = {k: ("waiting", "", time.monotonic()) for k in keys}
        self.console = console

    def update(self, key: str, step: str, detail: str = "") -> None:
        self.steps[key] = (step, detail, time.monotonic())
        get_logger("crm", key).info("%s %s", step, detail, event="progress")
        if self.console is not None:
            self.console.print(f"[{key}] {step} {detail}".rstrip(), highlight=False, markup=False)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class LiveProgress(Progress):
    """A rich live table, one row per store, redrawn on each step."""

    def __init__(self, keys: list[str], console: Console) -> None:
        super().__init__(keys, None)
        self.live = Live(self._table(), console=console, refresh_per_second=4, transient=False)

    def _table(self) -> Table:
        table = Table("store", "step", "detail", title="crm_download")
        for key in self.keys:
            step, detail, _ = self.steps[key]
            style = STYLES.get(step, "")
            table.add_row(key, f"[{style}]{step}[/]" if style else step, detail[:90])
        return table

    def update(self, key: str, step: str, detail: str = "") -> None:
        super().update(key, step, detail)
        self.live.update(self._table())

    def __enter__(self) -> LiveProgress:
        self.live.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.stop()


def make_progress(keys: list[str], console: Console) -> Progress:
    return LiveProgress(keys, console) if console.is_terminal else Progress(keys, console)
