"""The manual MFA/OTP prompt does not echo the code on a real terminal (a pty), and reads a piped stdin as is."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration

CHILD = "from storeflow.otp import read_code; print(repr(read_code('Enter MFA code: ')), flush=True)"


def _read_until(fd: int, needle: bytes, limit: float = 20.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + limit
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 1024)
            except OSError:
                break
    return seen


def test_the_code_typed_on_a_terminal_is_not_echoed() -> None:
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=child, stderr=child, stdout=subprocess.PIPE)
    os.close(child)
    try:
        shown = _read_until(main, b"Enter MFA code: ")
        os.write(main, b"493817\n")
        out, _ = proc.communicate(timeout=20)
        shown += _read_until(main, b"\n", limit=2.0)
    finally:
        proc.kill()
        os.close(main)
    assert b"Enter MFA code: " in shown
    assert b"493817" not in shown
    assert out.decode().strip() == "'493817\\n'"


def test_a_piped_code_is_read_as_is() -> None:
    result = subprocess.run([sys.executable, "-c", CHILD], input="778899\n", capture_output=True, text=True, timeout=20)
    assert result.stdout.strip() == "'778899\\n'"
    assert result.stderr == "Enter MFA code: "
