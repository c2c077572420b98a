"""The JSON tree: atomic writes and an index of what is already on disk (built by one walk)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from storeflow.files import write_json_atomic
from storeflow.hallmark.records import RecordKind, parse_file_name
from storeflow.logs import get_logger
from storeflow.paths import inside

log = get_logger("storage")


class OutputIndex:
    """Which order/billing ids already have a file under the output root (one directory walk)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._paths: dict[tuple[RecordKind, str], Path] = {}
        if root.is_dir():
            for folder, _dirs, files in os.walk(root):
                for name in files:
                    parsed = parse_file_name(name)
                    if parsed:
                        self._paths[parsed] = Path(folder) / name
        log.info("output index: %d files under %s", len(self._paths), root, event="index")

    def __len__(self) -> int:
        return len(self._paths)

    def get(self, kind: RecordKind, record_id: str) -> Path | None:
        return self._paths.get((kind, record_id))

    def has(self, kind: RecordKind, record_id: str) -> bool:
        return (kind, record_id) in self._paths

    def save(self, kind: RecordKind, record_id: str, path: Path, data: Any) -> Path:
        """Write the record (0600, under the root only) and keep the index right (a record whose date
        moved leaves no stale copy)."""
        write_json_atomic(inside(self.root, path), data, indent=2, private=True)
        old = self._paths.get((kind, record_id))
        if old is not None and old != path:
            old.unlink(missing_ok=True)
        self._paths[(kind, record_id)] = path
        return path
