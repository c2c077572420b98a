"""Id lists from the operator: a text file (one id a line) or a portal CSV export (UTF-8 BOM)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from storeflow.errors import ConfigError
from storeflow.hallmark.records import normalise_id

ORDER_COLUMN = "Order #"
BILLING_COLUMN = "Billing Document #"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _unique(ids: list[str]) -> list[str]:
    seen: set[str] = set()
    return [i for i in ids if not (i in seen or seen.add(i))]  # type: ignore[func-returns-value]


def read_id_list(path: Path) -> list[str]:
    """Ids one per line; blank lines and ``#`` comments ignored; duplicates dropped, order kept."""
    ids = []
    for number, raw in enumerate(_read_text(path).splitlines(), start=1):
        line = raw.split("#", 1)[0].strip().strip(",")
        if not line:
            continue
        if not line.replace("-", "").isalnum():
            raise ConfigError(f"{path}, line {number}: not an id: {raw.strip()!r}")
        ids.append(normalise_id(line))
    return _unique(ids)


def read_csv_column(path: Path, column: str) -> list[str]:
    """Values of ``column`` ("Order #" or "Billing Document #") from a portal CSV export."""
    text = _read_text(path)
    reader = csv.DictReader(io.StringIO(text))
    headers = [h.strip() for h in (reader.fieldnames or [])]
    if column not in headers:
        raise ConfigError(f"{path}: no {column!r} column (found: {', '.join(headers) or 'no header'})")
    original = (reader.fieldnames or [])[headers.index(column)]
    ids = []
    for row in reader:
        value = (row.get(original) or "").strip()
        if value:
            ids.append(normalise_id(value))
    return _unique(ids)
