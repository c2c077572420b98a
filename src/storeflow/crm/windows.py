"""Date windows (pure): CLI words, and the automatic window after the last success."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from storeflow.errors import ConfigError


@dataclass(frozen=True)
class Window:
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


def parse_day(text: str, today: date, what: str = "date") -> date:
    """``today``, ``yesterday`` or ``YYYY-MM-DD``."""
    word = text.strip().lower()
    if word == "today":
        return today
    if word == "yesterday":
        return today - timedelta(days=1)
    try:
        return date.fromisoformat(word)
    except ValueError:
        raise ConfigError(f"--{what}: {text!r} is not a date (use YYYY-MM-DD, today or yesterday)") from None


def requested_window(start: str | None, end: str | None, today: date) -> Window | None:
    """The window given on the command line, or None when neither --from nor --to was given."""
    if start is None and end is None:
        return None
    first = parse_day(start, today, "from") if start else None
    last = parse_day(end, today, "to") if end else None
    if first is None:
        first = last
    if last is None:
        last = today if first is not None and first <= today else first
    assert first is not None and last is not None
    if first > last:
        raise ConfigError(f"--from {first} is after --to {last}")
    return Window(first, last)


def auto_window(last_success_end: date | None, today: date, overlap_days: int, backfill_days: int) -> Window:
    """The window of a run without --from/--to.

    It restarts ``overlap_days`` before the day after the last successfully
    ingested window (late edits in the portal are picked up again), never reaches
    back more than ``backfill_days`` days (today included), and always includes
    today (runs are intra-day).
    """
    floor = today - timedelta(days=backfill_days - 1)
    if last_success_end is None:
        start = floor
    else:
        start = last_success_end + timedelta(days=1) - timedelta(days=overlap_days)
    start = max(start, floor)
    start = min(start, today)
    return Window(start, today)
