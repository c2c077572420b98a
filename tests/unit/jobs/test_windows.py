"""Hallmark's incremental window, as a table (last successful end, today, overlap, backfill -> window)."""

from __future__ import annotations

from datetime import date

import pytest

from storeflow.jobs.windows import hallmark_window

D = date.fromisoformat


@pytest.mark.parametrize(
    ("last_end", "today", "overlap", "backfill", "start", "end"),
    [
        (None, "2025-03-14", 2, 30, "2025-02-13", "2025-03-14"),  # first run: the backfill limit, today included
        (None, "2025-03-14", 2, 1, "2025-03-14", "2025-03-14"),
        ("2025-03-13", "2025-03-14", 2, 30, "2025-03-11", "2025-03-14"),  # the daily run: overlap + the new day
        ("2025-03-14", "2025-03-14", 2, 30, "2025-03-12", "2025-03-14"),  # a second run the same day
        ("2025-03-13", "2025-03-14", 0, 30, "2025-03-13", "2025-03-14"),  # no overlap: the last day is re-read
        ("2025-01-01", "2025-03-14", 2, 30, "2025-02-13", "2025-03-14"),  # after an outage: capped by backfill
        ("2025-03-20", "2025-03-14", 2, 30, "2025-03-14", "2025-03-14"),  # a clock that went back: today only
        ("2025-03-14", "2025-03-14", 40, 30, "2025-02-13", "2025-03-14"),  # overlap beyond backfill: capped
    ],
)
def test_hallmark_window(last_end: str | None, today: str, overlap: int, backfill: int, start: str, end: str) -> None:
    window = hallmark_window(D(last_end) if last_end else None, D(today), overlap, backfill)
    assert (window.start, window.end) == (D(start), D(end))
    assert window.days == (D(end) - D(start)).days + 1


def test_consecutive_daily_runs_overlap_by_the_setting_only() -> None:
    first = hallmark_window(None, D("2025-03-10"), 2, 7)
    second = hallmark_window(first.end, D("2025-03-11"), 2, 7)
    assert str(first) == "2025-03-04..2025-03-10"
    assert str(second) == "2025-03-08..2025-03-11"  # two days of overlap, one new day
