"""Where procrastinate connects behind a transaction pooler (docs/deploy.md, "Behind PgBouncer")."""

from __future__ import annotations

import pytest

from storeflow.db.connect import Database
from storeflow.db.pool import PoolConfig
from storeflow.jobs.app import jobs_connection, listens

POOLED = "postgresql://storeflow@pgbouncer:6432/storeflow"
DIRECT = "postgresql://storeflow@db:5432/storeflow"


@pytest.mark.parametrize(
    ("pooler", "direct", "url", "prepares", "listen"),
    [
        ("none", None, POOLED, True, True),  # no pooler: the one URL, prepared statements, LISTEN
        ("none", DIRECT, POOLED, True, True),  # a direct URL means nothing without a pooler
        ("transaction", DIRECT, DIRECT, True, True),  # the server itself: a session of its own
        ("transaction", None, POOLED, False, False),  # through the pooler: no prepares, poll
    ],
)
def test_jobs_connection(pooler: str, direct: str | None, url: str, prepares: bool, listen: bool) -> None:
    db = Database(POOLED, pool_config=PoolConfig(pooler=pooler, direct_url=direct))
    conninfo, kwargs = jobs_connection(db)
    assert conninfo == url
    assert ("prepare_threshold" not in kwargs) is prepares
    assert kwargs["application_name"] == "storeflow-jobs"
    assert listens(db) is listen
