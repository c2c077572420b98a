"""Errors a user can act on, each with the exit code the CLI returns for it.

Exit codes (documented in the README, stable for cron alerting):
0 ok; 1 some work failed; 2 configuration error; 3 a session needs bootstrap;
4 a dependency is missing or unreachable (database, browser, port); 5 stopped by
a rate limit (resumable); 6 skipped because another run holds the lock (nothing failed).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_NEEDS_BOOTSTRAP = 3
EXIT_UNAVAILABLE = 4
EXIT_RATE_LIMITED = 5
EXIT_SKIPPED = 6


class StoreflowError(Exception):
    """An error with a message meant for the operator (no traceback shown)."""

    exit_code = EXIT_FAILED


class ConfigError(StoreflowError):
    exit_code = EXIT_CONFIG


class UnavailableError(StoreflowError):
    """A dependency (database, browser, port) cannot be reached or found."""

    exit_code = EXIT_UNAVAILABLE


class NeedsBootstrapError(StoreflowError):
    exit_code = EXIT_NEEDS_BOOTSTRAP


class RateLimitStop(StoreflowError):
    exit_code = EXIT_RATE_LIMITED
