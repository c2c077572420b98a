"""Redaction of what a storeflow process prints outside its loggers."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_an_unexpected_traceback_is_printed_redacted() -> None:
    code = "from storeflow.logs import setup_logging; setup_logging(None); raise RuntimeError('password=tb-pw-77')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "RuntimeError: password=***" in result.stderr and "tb-pw-77" not in result.stderr
