"""The pure parts of storeflow.jobs.queries: next tick, duration buckets, the store a job works on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from storeflow.jobs.queries import Durations, next_fire, store_of


@pytest.mark.parametrize(
    ("cron", "after", "expected"),
    [
        ("15 7,11,15,19 * * *", datetime(2026, 12, 1, 10, 0, tzinfo=UTC), datetime(2026, 12, 1, 11, 15, tzinfo=UTC)),
        ("15 7,11,15,19 * * *", datetime(2026, 12, 1, 11, 15, tzinfo=UTC), datetime(2026, 12, 1, 15, 15, tzinfo=UTC)),
        ("15 7,11,15,19 * * *", datetime(2026, 12, 1, 20, 0, tzinfo=UTC), datetime(2026, 12, 2, 7, 15, tzinfo=UTC)),
        ("30 6 * * *", datetime(2026, 12, 31, 7, 0), datetime(2027, 1, 1, 6, 30, tzinfo=UTC)),  # naive = UTC
        ("* * * * * */15", datetime(2026, 12, 1, 10, 0, 7, tzinfo=UTC), datetime(2026, 12, 1, 10, 0, 15, tzinfo=UTC)),
        # another zone is converted first: procrastinate reads cron in UTC
        ("0 12 * * *", datetime(2026, 12, 1, 16, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
         datetime(2026, 12, 1, 12, 0, tzinfo=UTC)),  # 16:00 +05:30 is 10:30 UTC
    ],
)  # fmt: skip
def test_next_fire(cron: str, after: datetime, expected: datetime) -> None:
    assert next_fire(cron, after) == expected


def test_durations_count_a_value_on_an_edge_in_that_bucket() -> None:
    d = Durations("crm", "crm.download", "succeeded", edges=(1.0, 5.0, 10.0))
    for seconds in (0.5, 1.0, 4.0, 5.0, 9.0, 30.0):
        d.add(seconds)
    assert d.counts == [2, 2, 1]  # 30 s is past the last edge: only in +Inf (count)
    assert d.cumulative == [2, 4, 5]
    assert (d.count, d.total_seconds) == (6, pytest.approx(49.5))
    assert (d.percentile(50), d.percentile(99), d.percentile(0)) == (4.0, 30.0, 0.5)
    assert Durations("q", "t", "failed").percentile(50) is None
    assert Durations("q", "t", "failed", edges=(1.0,)).cumulative == [0]


@pytest.mark.parametrize(
    ("args", "store"),
    [
        ({"crm": "td", "store": "a668", "start": None}, "td_a668"),
        ({"crm": "uc", "store": "sector56"}, "uc_sector56"),
        ({"crm": "td", "store": "td_a668"}, "td_a668"),
        ({"crm": "all", "store": "all"}, None),
        ({"store": "S1"}, "S1"),  # esl.resync: the Hipoink store code
        ({"store_key": "td_a817"}, "td_a817"),
        ({"account": "hallmark:main"}, "hallmark:main"),
        ({"files": ["a.json"]}, None),
        ({}, None),
        (None, None),
    ],
)
def test_store_of(args: dict[str, object] | None, store: str | None) -> None:
    assert store_of(args) == store  # type: ignore[arg-type]
