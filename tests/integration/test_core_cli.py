from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LOG_DIRECTORY": str(tmp_path / "logs"),
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "storeflow", *args],
        env={**base, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_toml_error_exit_code_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "storeflow.toml").write_text("[crm]\nstores = [\n")
    result = _run(tmp_path, "config", "show")
    assert result.returncode == 2
    assert "storeflow.toml" in result.stderr and "line" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_show_masks_and_names_sources(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HALLMARK_PASSWORD=pw-in-dotenv-123\n")
    result = _run(tmp_path, "config", "show", HALLMARK_USERNAME="alice")
    assert result.returncode == 0, result.stderr
    assert "pw-in-dotenv-123" not in result.stdout
    line = next(x for x in result.stdout.splitlines() if "HALLMARK_PASSWORD" in x)
    assert "********" in line and ".env" in line
    assert "alice" in next(x for x in result.stdout.splitlines() if "HALLMARK_USERNAME" in x)


def test_bad_environment_value_names_variable(tmp_path: Path) -> None:
    result = _run(tmp_path, "config", "show", MFA_METHOD="carrier-pigeon")
    assert result.returncode == 2
    assert "MFA_METHOD" in result.stderr


def test_help_explains_commands(tmp_path: Path) -> None:
    result = _run(tmp_path, "--help")
    assert result.returncode == 0
    for word in ("hallmark", "crm", "esl", "sandbox", "db", "config", "doctor", "demo", "serve", "alerts"):
        assert word in result.stdout
