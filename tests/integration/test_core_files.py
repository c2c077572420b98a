"""Atomic JSON writes (sessions, the Hallmark tree, CRM API downloads) on a real filesystem."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from storeflow.files import private_target, write_json_atomic, write_private_text
from storeflow.sandbox.base import ClientConfig
from storeflow.sandbox.host import write_client_config


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


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.usefixtures("permissive_umask")
def test_private_files_and_folders_ignore_a_permissive_umask(tmp_path: Path) -> None:
    json_file = write_json_atomic(tmp_path / "new" / "deep" / "s.json", {"token": "t"}, private=True)
    text_file = write_private_text(tmp_path / "env" / ".env", "A=1\n")
    with private_target(tmp_path / "dl" / "r.xlsx") as staged:
        assert stat.S_IMODE(staged.parent.stat().st_mode) == 0o700
        staged.write_bytes(b"PK")  # a writer that takes no mode (Playwright's save_as): 0666 under umask 0
    for path in (json_file, text_file, tmp_path / "dl" / "r.xlsx"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (tmp_path / "new", tmp_path / "new" / "deep", tmp_path / "env", tmp_path / "dl"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert [p.name for p in (tmp_path / "dl").iterdir()] == ["r.xlsx"]
    assert text_file.read_text() == "A=1\n"


def test_a_failed_private_save_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(OSError), private_target(tmp_path / "r.xlsx") as staged:
        staged.write_bytes(b"half")
        raise OSError("download failed")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("permissive_umask")
def test_sandbox_client_config_and_its_env_are_written_0600(tmp_path: Path) -> None:
    config = ClientConfig(env={"HALLMARK_PASSWORD": "sandbox-pw"}, toml={"crm": {"stores": []}})
    toml_path, env_path = write_client_config(config, tmp_path / "sb" / "storeflow.toml")
    assert {stat.S_IMODE(p.stat().st_mode) for p in (toml_path, env_path)} == {0o600}
    assert "HALLMARK_PASSWORD=sandbox-pw" in env_path.read_text()
