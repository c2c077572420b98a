from __future__ import annotations

import pytest

from storeflow.fmt import format_age


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(None, "—"), (0, "0 s"), (89, "89 s"), (90, "2 min"), (3599, "60 min"), (5400, "1.5 h"), (172800, "2.0 d")],
)
def test_format_age(seconds: float | None, expected: str) -> None:
    assert format_age(seconds) == expected


def test_format_age_missing_text() -> None:
    assert format_age(None, "no session (bootstrap needed)") == "no session (bootstrap needed)"
