"""Retry policy of jobs (pure): backoff, transient or permanent, and a run's worst exit code.

procrastinate's own `retry.py` is the model: a decision from (failure kind, attempt), no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from storeflow.crm.store import INGEST_SKIPPED, INGEST_SUCCESS, NEEDS_BOOTSTRAP
from storeflow.errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_NEEDS_BOOTSTRAP,
    EXIT_OK,
    EXIT_RATE_LIMITED,
    EXIT_SKIPPED,
    EXIT_UNAVAILABLE,
)

if TYPE_CHECKING:
    from storeflow.settings import Settings

FailureKind = Literal["transient", "permanent", "handed_back"]

# what an operator must look at first: a human step (bootstrap), a broken configuration, a missing
# dependency, a failure, a resumable stop, a skip; the worst of a set of jobs is the first found here
SEVERITY = (EXIT_NEEDS_BOOTSTRAP, EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_FAILED, EXIT_RATE_LIMITED, EXIT_SKIPPED, EXIT_OK)


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 4
    initial_delay: float = 30.0
    multiplier: float = 2.0
    max_delay: float = 900.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryConfig:
        return cls(
            max_attempts=settings.JOB_RETRY_MAX_ATTEMPTS,
            initial_delay=settings.JOB_RETRY_INITIAL_DELAY_SECONDS,
            multiplier=settings.JOB_RETRY_BACKOFF_MULTIPLIER,
            max_delay=settings.JOB_RETRY_MAX_DELAY_SECONDS,
        )


def retry_delay(attempts_done: int, config: RetryConfig) -> float:
    """Seconds before the next attempt after ``attempts_done`` failed ones (1 = the first failed)."""
    return min(config.initial_delay * config.multiplier ** max(attempts_done - 1, 0), config.max_delay)


def retry_decision(kind: FailureKind, attempts_done: int, config: RetryConfig) -> float | None:
    """Seconds until the job runs again, or None when it stays failed.

    A transient failure retries until ``max_attempts`` attempts were made; a permanent one never
    does; a job handed back by a stopping worker runs again at once and costs no attempt budget.
    """
    if kind == "handed_back":
        return 0.0
    if kind == "permanent" or attempts_done >= config.max_attempts:
        return None
    return retry_delay(attempts_done, config)


def failure_kind(exit_code: int) -> FailureKind | None:
    """None for a job that did its work (0) or had nothing to do (6, skipped); else what a retry can fix."""
    if exit_code in (EXIT_OK, EXIT_SKIPPED):
        return None
    if exit_code in (EXIT_NEEDS_BOOTSTRAP, EXIT_CONFIG):
        return "permanent"
    return "transient"  # 1 (portal 5xx, timeout), 4 (database, browser unavailable), 5 (rate limit)


def crm_outcome(status: str, has_file: bool, unavailable: bool) -> tuple[int, FailureKind | None]:
    """(exit code, failure kind) of one CRM store's outcome, with the foreground command's exit codes.

    A failure on a downloaded file (a bad file) is permanent: the portal sent that file, and asking
    again gives the same one. A failure before any file exists (portal 5xx, timeout) is transient.
    """
    if status in INGEST_SUCCESS:
        return EXIT_OK, None
    if status == INGEST_SKIPPED:
        return EXIT_SKIPPED, None
    if status == NEEDS_BOOTSTRAP:
        return EXIT_NEEDS_BOOTSTRAP, "permanent"
    if unavailable:
        return EXIT_UNAVAILABLE, "transient"
    return EXIT_FAILED, "permanent" if has_file else "transient"


def worst_exit_code(codes: Iterable[int]) -> int:
    """The exit code of a set of jobs: the most severe of theirs (0 when empty)."""
    found = set(codes)
    for code in SEVERITY:
        if code in found:
            return code
    return max(found) if found else EXIT_OK
