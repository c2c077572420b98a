"""Path components that come from a portal, and the rule that a built path stays inside its root. Pure.

A portal chooses Hallmark's customer and order ids, the store numbers mapped from them and the
name (so the extension) of a served CRM file. Each such value becomes one path component only
after it matches a strict pattern, and every path built from them is checked to stay under its
root, so ``customerId="../../.."`` fails its record instead of writing outside OUTPUT_DIRECTORY.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from storeflow.errors import StoreflowError
from storeflow.logs import redact

# ids and store numbers: letters, digits, '-' and '_' (no dot, no separator), 1-64 characters
COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
REPORT_EXTENSIONS = ("xlsx", "xls", "csv", "json")
_SHOWN = 40


class UnsafePathError(StoreflowError):
    """A portal value that cannot be a path component, or a path that would leave its root."""


def shown(value: object) -> str:
    """``value`` as an error message may quote it: redacted, cut to 40 characters, repr-quoted."""
    text = redact(str(value))
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "...")


def safe_component(field: str, value: object) -> str:
    """``value`` as one path component, or UnsafePathError naming ``field`` and the (redacted) value."""
    text = str(value)
    if COMPONENT.fullmatch(text) is None:
        raise UnsafePathError(
            f"{field} {shown(value)} cannot be used in a file name "
            "(letters, digits, '-' and '_' only, at most 64): nothing was written"
        )
    return text


def safe_extension(value: object, field: str = "file extension") -> str:
    """A served file's extension, lower-cased, when it is one a report may have (xlsx, xls, csv, json)."""
    ext = str(value).lstrip(".").lower()
    if ext not in REPORT_EXTENSIONS:
        raise UnsafePathError(
            f"{field} {shown(value)} is not one of {', '.join(REPORT_EXTENSIONS)}: the file was not saved"
        )
    return ext


def inside(root: Path, path: Path) -> Path:
    """``path`` when it lies strictly under ``root`` once both are normalised (``..`` folded), else an error.

    Lexical, like the rest of this module: the components themselves can hold no separator or dot-dot.
    """
    base = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.abspath(path))
    if os.path.commonpath([base, full]) != base or full == base:
        raise UnsafePathError(f"{shown(path)} is outside {shown(root)}: nothing was written")
    return path
