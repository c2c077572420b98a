"""The CRM status words are written once, in crm/store.py: other modules and the CRM page import them."""

from __future__ import annotations

import re
from pathlib import Path

from storeflow.crm import store

SRC = Path(store.__file__).resolve().parent.parent
SUCCESS = re.compile(
    r"""\(\s*(["'])(ok|duplicate|empty)\1\s*,\s*(["'])(ok|duplicate|empty)\3\s*,\s*(["'])(ok|duplicate|empty)\5"""
)


def test_the_success_tuple_is_written_once() -> None:
    found = [
        str(path.relative_to(SRC))
        for path in sorted(SRC.rglob("*"))
        if path.suffix in {".py", ".html"} and SUCCESS.search(path.read_text(encoding="utf-8"))
    ]
    assert found == []  # crm/store.py builds INGEST_SUCCESS from its named words
    assert set(store.INGEST_SUCCESS) == {"ok", "duplicate", "empty"}


def test_ledger_words_follow_the_ingest_outcome() -> None:
    assert store.ledger_status(store.INGEST_OK) == store.LEDGER_INGESTED
    assert [store.ledger_status(s) for s in ("duplicate", "empty", "failed")] == ["duplicate", "empty", "failed"]
