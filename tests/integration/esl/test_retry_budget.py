"""Issue 11, defect 3: outages, rate limits and crashed workers do not spend MAX_RETRY_ATTEMPTS."""

from __future__ import annotations

import logging

import pytest

from .conftest import Esl
from .test_webhooks import rows
from .test_worker import log_statuses, product_body

pytestmark = pytest.mark.integration
CODE = "4006381333931"


def test_outages_rate_limits_and_lease_expiries_are_not_attempts(esl: Esl, caplog: pytest.LogCaptureFixture) -> None:
    esl.add_mapping()
    esl.post("products/create", product_body())
    # a crashed worker held the item twice already (two claims, two lease expiries)
    with esl.connect() as conn:
        conn.execute(
            "UPDATE sync_queue SET state = 'in_progress', attempts = 2, locked_by = 'gone:1',"
            " locked_until = now() - interval '1 second'"
        )
    # then Hipoink is down for six answers, rate-limits twice, fails once with a 500, and recovers
    esl.fault(status=503, count=4, path="/product/")
    esl.fault(status=504, count=1, path="/product/")
    esl.fault(count=1, latency_ms=2000, path="/product/")  # a timeout (request_timeout 0.5 s below)
    esl.fault(status=429, retry_after=0.05, count=2, path="/product/")
    esl.fault(status=500, count=1, path="/product/")
    with caplog.at_level(logging.INFO, logger="storeflow"):
        esl.drain(max_attempts=2, max_delay=0.1, request_timeout=0.5, lease_seconds=10)
    assert CODE in esl.labels()
    assert log_statuses(esl) == ["lease_expired"] + ["retry"] * 9 + ["succeeded"]
    assert rows(esl, "SELECT state, attempts, answered_errors FROM sync_queue") == [
        {"state": "succeeded", "attempts": 12, "answered_errors": 1}
    ]
    details = [r["detail"] for r in rows(esl, "SELECT detail FROM sync_log WHERE status <> 'succeeded' ORDER BY id")]
    assert details[0] == "returned to the queue: the lease expired (not an attempt)"
    assert all("not an attempt" in d for d in details[1:-1])
    assert details[-1].endswith("(answered, attempt 1 of 2)")
    messages = [r.getMessage() for r in caplog.records]
    assert any("back to pending, retry in" in m and "HTTP 503" in m for m in messages)
    assert not any("dead-lettered" in m for m in messages)


def test_only_the_time_window_ends_an_outage_and_the_log_says_dead_lettered(
    esl: Esl, caplog: pytest.LogCaptureFixture
) -> None:
    esl.add_mapping()
    esl.post("products/create", product_body())
    esl.post("products/create", product_body().replace(CODE.encode(), b"4006381333948"))
    # the first item has been failing for two days (a crash loop or a long outage), the second just started
    with esl.connect() as conn:
        conn.execute(
            "UPDATE sync_queue SET retrying_since = now() - interval '2 days', attempts = 30"
            " WHERE id = (SELECT min(id) FROM sync_queue)"
        )
    esl.fault(status=503, count=1, path="/product/")
    with caplog.at_level(logging.INFO, logger="storeflow"):
        esl.drain(retry_window=3600.0, max_delay=0.05, batch_size=1)
    items = rows(esl, "SELECT id, state, last_error FROM sync_queue ORDER BY id")
    assert [(i["state"], i["last_error"]) for i in items] == [("dead", "HTTP 503"), ("succeeded", None)]
    dead = rows(esl, "SELECT detail FROM sync_log WHERE status = 'dead'")
    assert dead[0]["detail"].startswith("dead-lettered: failing for 1728") and "3600s retry window" in dead[0]["detail"]
    lines = [r.getMessage() for r in caplog.records if f"#{items[0]['id']} " in r.getMessage()]
    assert len(lines) == 1 and "dead-lettered" in lines[0] and "returned to the queue" not in lines[0]
