"""Listening sockets for storeflow's servers (the web app, the demo dashboard, the simulators)."""

from __future__ import annotations

import socket

from storeflow.errors import UnavailableError

HOST = "127.0.0.1"


def bind_port(
    port: int, name: str, host: str = HOST, hint: str = "Stop what uses it or choose another --port."
) -> socket.socket:
    """A listening socket on host:port (default 127.0.0.1; port 0 = any free port), or a clear error.

    ``name`` says what the port is for and ``hint`` what the operator can do about a port in use;
    both appear in the error.
    """
    # proto IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so (else 40 ms delayed-ACK stalls)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UnavailableError(f"port {port} on {host} ({name}) is in use: {exc.strerror}. {hint}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock
