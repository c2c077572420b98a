"""Hallmark's incremental window (pure): what a scheduled bulk extraction asks the portal for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class DateWindow:
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


def hallmark_window(last_success_end: date | None, today: date, overlap_days: int, backfill_days: int) -> DateWindow:
    """From the last successful run's end minus ``overlap_days`` to today, never more than ``backfill_days``.

    The overlap re-reads the last days because the portal adds and edits records of a day after it
    (a run at 06:30 sees only part of yesterday); records already on disk are skipped, not downloaded
    again. The backfill limit (today included) bounds the first run and a run after a long outage.
    """
    floor = today - timedelta(days=max(backfill_days, 1) - 1)
    start = floor if last_success_end is None else last_success_end - timedelta(days=overlap_days)
    start = min(max(start, floor), today)
    return DateWindow(start, today)
