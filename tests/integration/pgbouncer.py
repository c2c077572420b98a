"""PgBouncer in transaction mode in front of a PostgreSQL server, for tests and benchmarks.

A real component, started like the others: Debian's ``/usr/sbin/pgbouncer`` with a pgbouncer.ini and
userlist written to a temporary folder, listening on a free 127.0.0.1 port, forwarding every database
name to the server (``* =``), stopped at the end. Never the system service.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

BINARY = "/usr/sbin/pgbouncer"


@dataclass(frozen=True)
class Bouncer:
    port: int
    server_url: str
    folder: Path

    def url(self, direct_url: str) -> str:
        """``direct_url`` (a database on the server) through this PgBouncer."""
        return make_conninfo(direct_url, host="127.0.0.1", port=str(self.port))

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""


def find_binary() -> str | None:
    return BINARY if os.access(BINARY, os.X_OK) else shutil.which("pgbouncer")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(server_url: str, port: int, folder: Path, pool_size: int) -> tuple[str, str]:
    info = conninfo_to_dict(server_url)
    host, server_port = info.get("host") or "127.0.0.1", info.get("port") or "5432"
    user, password = info.get("user") or "postgres", info.get("password") or ""
    forward = f"host={host} port={server_port}" + (f" password={password}" if password else "")
    run_as = ""
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        for name in ("postgres", "nobody"):
            try:
                pwd.getpwnam(name)
            except KeyError:
                continue
            run_as = f"user = {name}"
            break
    ini = f"""[databases]
* = {forward}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
{run_as}
auth_type = trust
auth_file = {folder / "userlist.txt"}
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 2000
max_db_connections = 0
server_reset_query =
ignore_startup_parameters = extra_float_digits
pidfile = {folder / "pgbouncer.pid"}
logfile = {folder / "pgbouncer.log"}
log_connections = 0
log_disconnections = 0
"""
    return ini, f'"{user}" ""\n'


@contextmanager
def running_pgbouncer(server_url: str, pool_size: int = 20, timeout: float = 15.0) -> Iterator[Bouncer]:
    """PgBouncer (transaction mode) in front of ``server_url``; stopped (SIGINT: at once) when the block ends."""
    binary = find_binary()
    if binary is None:
        raise RuntimeError("pgbouncer is not installed: apt-get install -y pgbouncer (scripts/install.sh --test)")
    folder = Path(tempfile.mkdtemp(prefix="sf-pgbouncer-"))
    folder.chmod(0o777)  # it may drop to the postgres user: its log and pid files go here
    port = _free_port()
    ini, users = _config(server_url, port, folder, pool_size)
    (folder / "pgbouncer.ini").write_text(ini)
    (folder / "userlist.txt").write_text(users)
    for name in ("pgbouncer.ini", "userlist.txt"):
        (folder / name).chmod(0o644)
    proc = subprocess.Popen(
        [binary, str(folder / "pgbouncer.ini")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    bouncer = Bouncer(port, server_url, folder)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read() if proc.stdout else ""
                raise RuntimeError(f"pgbouncer exited ({proc.returncode}): {out}{bouncer.log()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not listen on 127.0.0.1:{port}: {bouncer.log()}") from None
                time.sleep(0.05)
        yield bouncer
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # immediate shutdown
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()
        shutil.rmtree(folder, ignore_errors=True)
