"""Atomic JSON writes (sessions, the Hallmark tree, CRM API downloads) on a real filesystem."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from storeflow.files import write_json_atomic


@pytest.mark.parametrize(("private", "mode"), [(True, 0o600), (False, 0o644)])
def test_written_whole_with_its_mode(tmp_path: Path, private: bool, mode: int) -> None:
    path = write_json_atomic(tmp_path / "a" / "b.json", {"name": "Café ✓", "n": 1}, private=private)
    assert json.loads(path.read_text(encoding="utf-8")) == {"name": "Café ✓", "n": 1}
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert [p.name for p in path.parent.iterdir()] == ["b.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = write_json_atomic(tmp_path / "rows.json", [1, 2], indent=2)
    assert path.read_text(encoding="utf-8") == "[\n  1,\n  2\n]\n"
    with pytest.raises(TypeError):
        write_json_atomic(path, [object()])
    assert json.loads(path.read_text(encoding="utf-8")) == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["rows.json"]
