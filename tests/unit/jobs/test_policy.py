"""Job retry policy as tables: attempt -> wait, failure kind, CRM outcome -> exit code, worst exit code."""

from __future__ import annotations

import pytest

from storeflow.jobs.policy import RetryConfig, crm_outcome, failure_kind, retry_decision, retry_delay, worst_exit_code

CFG = RetryConfig(max_attempts=4, initial_delay=30.0, multiplier=2.0, max_delay=100.0)


@pytest.mark.parametrize(("attempts", "wait"), [(0, 30.0), (1, 30.0), (2, 60.0), (3, 100.0), (10, 100.0)])
def test_exponential_backoff_is_capped(attempts: int, wait: float) -> None:
    assert retry_delay(attempts, CFG) == wait


@pytest.mark.parametrize(
    ("kind", "attempts", "expected"),
    [
        ("transient", 1, 30.0),
        ("transient", 3, 100.0),
        ("transient", 4, None),  # the budget is spent: the job stays failed
        ("permanent", 1, None),  # needs bootstrap, configuration, bad file: never retried
        ("handed_back", 1, 0.0),  # a stopping worker's job runs again at once
        ("handed_back", 9, 0.0),
    ],
)
def test_retry_decision(kind: str, attempts: int, expected: float | None) -> None:
    assert retry_decision(kind, attempts, CFG) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "kind"),
    [(0, None), (6, None), (1, "transient"), (4, "transient"), (5, "transient"), (2, "permanent"), (3, "permanent")],
)
def test_failure_kind_by_exit_code(code: int, kind: str | None) -> None:
    assert failure_kind(code) == kind


@pytest.mark.parametrize(
    ("status", "has_file", "unavailable", "expected"),
    [
        ("ok", True, False, (0, None)),
        ("duplicate", True, False, (0, None)),
        ("empty", True, False, (0, None)),
        ("skipped", False, False, (6, None)),
        ("needs_bootstrap", False, False, (3, "permanent")),
        ("failed", False, True, (4, "transient")),  # the database was lost
        ("failed", False, False, (1, "transient")),  # portal 5xx, timeout: no file yet
        ("failed", True, False, (1, "permanent")),  # a bad file: the portal would send it again
    ],
)
def test_crm_outcome(status: str, has_file: bool, unavailable: bool, expected: tuple[int, str | None]) -> None:
    assert crm_outcome(status, has_file, unavailable) == expected


@pytest.mark.parametrize(
    ("codes", "worst"),
    [([], 0), ([0, 0], 0), ([0, 6], 6), ([6, 1], 1), ([1, 4], 4), ([4, 3, 1], 3), ([2, 1], 2), ([5, 0], 5)],
)
def test_worst_exit_code(codes: list[int], worst: int) -> None:
    assert worst_exit_code(codes) == worst
