"""`storeflow hallmark stores load`: the canonical customer_id -> store number/name mapping.

From a CSV (``customer_id,store_number,store_name``; the portal's ``Customer #``,
``Store #``/``Store Number``, ``Store Name`` are accepted too) or from a storeflow
TOML file's ``[hallmark] stores``. Nothing here knows any store; `store.upsert_stores` writes them.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from storeflow.errors import ConfigError
from storeflow.hallmark.records import normalise_id
from storeflow.settings import HallmarkStore, load_toml

HEADERS = {
    "customer_id": ("customer_id", "customer #", "customer", "customer id", "customer number"),
    "store_number": ("store_number", "store #", "store number", "store", "store no"),
    "store_name": ("store_name", "store name", "name"),
}


def read_stores_csv(path: Path) -> list[HallmarkStore]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}") from None
    reader = csv.DictReader(io.StringIO(text))
    fields = {h.strip().lower(): h for h in reader.fieldnames or []}
    columns: dict[str, str] = {}
    for key, names in HEADERS.items():
        found = next((fields[n] for n in names if n in fields), None)
        if found is None:
            raise ConfigError(f"{path}: no {key} column (accepted headers: {', '.join(names)})")
        columns[key] = found
    stores = []
    for line, row in enumerate(reader, start=2):
        values = {k: (row.get(col) or "").strip() for k, col in columns.items()}
        if not any(values.values()):
            continue
        missing = [k for k, v in values.items() if not v]
        if missing:
            raise ConfigError(f"{path}, line {line}: empty {', '.join(missing)}")
        stores.append(HallmarkStore(**{**values, "customer_id": normalise_id(values["customer_id"])}))
    return stores


def read_stores_file(path: Path) -> list[HallmarkStore]:
    """A CSV, or a storeflow TOML file (its ``[hallmark] stores``)."""
    if path.suffix.lower() == ".toml":
        stores = load_toml(path).hallmark.stores
        if not stores:
            raise ConfigError(f"{path}: no [[hallmark.stores]] entries")
        return stores
    return read_stores_csv(path)
