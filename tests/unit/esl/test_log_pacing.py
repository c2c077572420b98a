"""A failure repeated per webhook (a database outage) is logged once per few seconds, with the count skipped."""

from __future__ import annotations

import pytest

from storeflow.esl.api import EveryFewSeconds


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ([0.0], [0]),
        ([0.0, 1.0, 2.0], [0, None, None]),
        ([0.0, 1.0, 2.0, 5.0], [0, None, None, 2]),
        ([0.0, 5.0, 10.0], [0, 0, 0]),
        ([0.0, 4.9, 5.0, 5.1, 10.0], [0, None, 1, None, 1]),
    ],
)
def test_one_line_per_window_names_the_skipped(times: list[float], expected: list[int | None]) -> None:
    pacing = EveryFewSeconds(5.0)
    assert [pacing.take(now=t) for t in times] == expected
