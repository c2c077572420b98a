"""A port in use: `storeflow serve` and the sandbox each tell their own user what to change."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from storeflow.errors import UnavailableError
from storeflow.sandbox.host import bind_port as bind_simulator_port
from storeflow.web.ports import bind_port

pytestmark = pytest.mark.integration


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        yield holder.getsockname()[1]


def test_serve_port_in_use_names_the_port_option_not_the_sandbox_one(taken_port: int) -> None:
    with pytest.raises(UnavailableError) as caught:
        bind_port(taken_port, "storeflow serve")
    message = str(caught.value)
    assert f"port {taken_port} on 127.0.0.1 (storeflow serve) is in use" in message
    assert "--port." in message and "--port-base" not in message and "simulator" not in message


def test_simulator_port_in_use_keeps_the_sandbox_wording(taken_port: int) -> None:
    with pytest.raises(UnavailableError, match=r"\(simulator hipoink\) is in use: .*pick another --port-base\."):
        bind_simulator_port(taken_port, "hipoink")


def test_port_zero_binds_a_free_loopback_port() -> None:
    sock = bind_port(0, "test")
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port > 0
    finally:
        sock.close()
