from __future__ import annotations

from datetime import date

import pytest

from storeflow.crm.windows import Window, auto_window, parse_day, requested_window
from storeflow.errors import ConfigError

TODAY = date(2025, 11, 12)


@pytest.mark.parametrize(
    ("last", "overlap", "backfill", "expected"),
    [
        (None, 2, 30, Window(date(2025, 10, 14), TODAY)),  # first run: backfill cap
        (date(2025, 11, 11), 2, 30, Window(date(2025, 11, 10), TODAY)),  # overlap 2 days
        (date(2025, 11, 12), 2, 30, Window(date(2025, 11, 11), TODAY)),  # intra-day rerun
        (date(2025, 11, 12), 0, 30, Window(TODAY, TODAY)),  # never after today
        (date(2025, 11, 11), 0, 30, Window(TODAY, TODAY)),
        (date(2025, 9, 1), 2, 30, Window(date(2025, 10, 14), TODAY)),  # long outage: capped
        (date(2025, 11, 5), 2, 3, Window(date(2025, 11, 10), TODAY)),  # small backfill wins
        (date(2025, 11, 5), 10, 30, Window(date(2025, 10, 27), TODAY)),
        (None, 2, 1, Window(TODAY, TODAY)),
    ],
)
def test_auto_window(last: date | None, overlap: int, backfill: int, expected: Window) -> None:
    assert auto_window(last, TODAY, overlap, backfill) == expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, None),
        ("today", "today", Window(TODAY, TODAY)),
        ("yesterday", "today", Window(date(2025, 11, 11), TODAY)),
        ("yesterday", "yesterday", Window(date(2025, 11, 11), date(2025, 11, 11))),
        ("2025-11-01", None, Window(date(2025, 11, 1), TODAY)),
        (None, "2025-11-05", Window(date(2025, 11, 5), date(2025, 11, 5))),
        ("2025-11-12", "2025-11-12", Window(TODAY, TODAY)),
        (" Today ", "TODAY", Window(TODAY, TODAY)),
    ],
)
def test_requested_window(start: str | None, end: str | None, expected: Window | None) -> None:
    assert requested_window(start, end, TODAY) == expected


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("2025-11-12", "2025-11-01", "is after --to"),
        ("12/11/2025", None, "--from: '12/11/2025' is not a date"),
        (None, "tomorrowish", "--to: 'tomorrowish' is not a date"),
    ],
)
def test_requested_window_errors(start: str | None, end: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        requested_window(start, end, TODAY)


def test_window_days_and_text() -> None:
    window = Window(date(2025, 11, 10), TODAY)
    assert (window.days, str(window)) == (3, "2025-11-10..2025-11-12")
    assert parse_day("yesterday", TODAY) == date(2025, 11, 11)
