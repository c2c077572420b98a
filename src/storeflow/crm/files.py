"""Canonical file names (portal values checked by storeflow.paths) and the retention rule (pure), plus md5 of a file."""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime, timedelta
from pathlib import Path

from storeflow.paths import safe_component, safe_extension

CRM_LABELS = {"td": "TD", "uc": "UC"}
_UNSAFE = re.compile(r"[^A-Za-z0-9]+")


def safe_store_name(name: str) -> str:
    """ "Sector 56, Gurugram" -> "Sector56Gurugram" (spec 2.4 names carry no spaces)."""
    return "".join(part[:1].upper() + part[1:] for part in _UNSAFE.split(name) if part)


def canonical_name(crm: str, report_type: str, store_name: str, start: date, end: date, ext: str) -> str:
    """``<CRM>_<ReportType>_<StoreName>_<From>_to_<To>.<ext>`` (spec 2.4).

    ``ext`` must be a report's (xlsx, xls, csv, json) and the store name must keep a letter or digit:
    otherwise UnsafePathError, and nothing is saved.
    """
    ext = safe_extension(ext or "xlsx")
    store = safe_component("store name", safe_store_name(store_name))
    return f"{CRM_LABELS[crm]}_{report_type}_{store}_{start.isoformat()}_to_{end.isoformat()}.{ext}"


def extension_for(content_type: str | None, filename: str | None, body: bytes) -> str:
    """The extension of what the source served: its file name, else its content type, else its bytes.

    A guess, not a check: `canonical_name` (through `storeflow.paths.safe_extension`) refuses anything
    but a report's extension.
    """
    if filename and "." in filename:
        return filename.rsplit(".", 1)[1].lower()
    ctype = (content_type or "").split(";")[0].strip().lower()
    if "spreadsheetml" in ctype:
        return "xlsx"
    if ctype in {"application/vnd.ms-excel"}:
        return "xls"
    if ctype.endswith("json"):
        return "json"
    if ctype in {"text/csv"}:
        return "csv"
    return "xlsx" if body[:4] == b"PK\x03\x04" else "bin"


def keep_until(ingested_at: datetime, retention_days: int, keep_files: bool) -> datetime | None:
    """When an ingested file may be deleted: None = keep for good (--keep-files)."""
    if keep_files:
        return None
    return ingested_at + timedelta(days=retention_days)


def expired_files(files: list[tuple[Path, datetime]], now: datetime, retention_days: int) -> list[Path]:
    """Files (path, modified) older than the retention period."""
    limit = now - timedelta(days=retention_days)
    return [path for path, modified in files if modified <= limit]


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
