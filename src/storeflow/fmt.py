"""Small display helpers shared by the CLI, doctor and dashboard."""

from __future__ import annotations


def format_age(seconds: float | None, missing: str = "—") -> str:
    """A short human age: 45 s, 12 min, 5.2 h, 3.0 d (``missing`` when unknown)."""
    if seconds is None:
        return missing
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
