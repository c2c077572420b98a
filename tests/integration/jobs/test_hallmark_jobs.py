"""Hallmark bulk jobs in an in-process worker: the incremental window, and the import job they defer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from storeflow.db.connect import Database
from storeflow.jobs import names, worker
from storeflow.jobs.app import plan
from storeflow.sandbox.host import SandboxHost
from storeflow.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hallmark_host() -> Iterator[SandboxHost]:
    host = SandboxHost(["hallmark"], port_base=0, seed=5)
    host.start_in_thread()
    yield host
    host.stop()


def run_jobs(settings: Settings, db: Database, task: str, **request: Any) -> list[dict[str, Any]]:
    """Defer ``task`` and run a worker in this process until it and the jobs it deferred are done."""
    return worker.run_jobs(settings, db, plan(settings, task, **request), worker.worker_options(settings))


def test_a_second_daily_run_downloads_only_the_new_days(
    hallmark_host: SandboxHost, make_settings: Callable[..., Settings], db_url: str, database: Database, tmp_path: Path
) -> None:
    config = tmp_path / "hm" / "storeflow.toml"
    hallmark_host.write_config(config)
    settings = make_settings(db_url=db_url, config=config, HALLMARK_BACKFILL_DAYS="4", HALLMARK_OVERLAP_DAYS="2")
    base = hallmark_host.urls["hallmark"]

    def orders(start: str, end: str) -> int:
        found = httpx.get(f"{base}/_sandbox/truth", params={"customer_ids": "all", "start": start, "end": end})
        return int(found.json()["orders"])

    def imported() -> int:
        with database.transaction() as conn:
            return int(conn.execute("SELECT count(*) AS n FROM orders").fetchone()["n"])

    first = run_jobs(settings, database, names.HALLMARK_BULK_ORDERS, today="2025-03-10")
    assert [(j["task_name"], j["status"]) for j in first] == [
        (names.HALLMARK_BULK_ORDERS, "succeeded"),
        (names.HALLMARK_IMPORT, "succeeded"),  # deferred by the extraction, on the files it wrote
    ]
    day1 = first[0]["detail"]
    assert (day1["from"], day1["to"]) == ("2025-03-07", "2025-03-10")  # the backfill limit, today included
    assert (day1["downloaded"], day1["skipped"]) == (orders("2025-03-07", "2025-03-10"), 0)
    assert first[1]["detail"]["failed"] == 0 and imported() == orders("2025-03-07", "2025-03-10")

    second = run_jobs(settings, database, names.HALLMARK_BULK_ORDERS, today="2025-03-11")
    day2 = second[0]["detail"]
    assert (day2["from"], day2["to"]) == ("2025-03-08", "2025-03-11")  # last end minus the 2-day overlap
    assert orders("2025-03-11", "2025-03-11") > 0
    # only the new day is downloaded; the overlap's records are on disk already
    assert (day2["downloaded"], day2["skipped"]) == (
        orders("2025-03-11", "2025-03-11"),
        orders("2025-03-08", "2025-03-10"),
    )
    assert [j["status"] for j in second] == ["succeeded", "succeeded"]
    assert imported() == orders("2025-03-07", "2025-03-11")
