"""A real PostgreSQL server for the tests: initdb + pg_ctl in a temporary folder, a free loopback port.

Run as root (CI on Debian), the server runs as the ``postgres`` user through ``runuser``: initdb
refuses root. Authentication is ``trust`` on 127.0.0.1 only (the server listens nowhere else), so
the DSN carries no password. ``restart()`` and ``stop()``/``start()`` let a test take the database
away mid-stream.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SERVER_USER = "postgres"


def find_bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and pg_ctl, else the PATH's."""
    root = Path("/usr/lib/postgresql")
    versions = []
    if root.is_dir():
        for child in root.iterdir():
            if child.name.isdigit() and (child / "bin" / "initdb").exists():
                versions.append((int(child.name), child / "bin"))
    if versions:
        return max(versions)[1]
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in ``base``; ``dsn`` connects as the superuser to database ``postgres``."""

    bin_dir: Path
    base: Path
    port: int = field(default_factory=free_port)
    run_as: str | None = None  # the user the server runs as (None: this process's user)

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def user(self) -> str:
        return self.run_as or _current_user()

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        cmd = [str(self.bin_dir / tool), *args]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.base)
        if done.returncode != 0:
            said = done.stderr.strip() or done.stdout.strip()
            raise RuntimeError(f"{tool} failed ({done.returncode}): {said}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--locale=C")
        with (self.data / "postgresql.conf").open("a") as conf:
            # loopback only; fsync off: a test cluster need not survive a power cut, and the
            # exactly-once tests restart the server cleanly or kill the worker, not the machine
            conf.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.base}'\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 50\n"
            )

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "server.log"), "-w", "-t", "60",
                  "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "server.log"), "-m", "fast",
                  "-w", "-t", "60", "restart")

    def log(self) -> str:
        path = self.base / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _current_user() -> str:
    import getpass

    return getpass.getuser()


def start_server() -> PostgresServer:
    """A started server in a fresh temporary folder (owned by the server's user); raises if it fails."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL is not installed (no initdb/pg_ctl)")
    run_as = SERVER_USER if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="so-pg-"))
    if run_as:
        shutil.chown(base, user=run_as, group=run_as if _group_exists(run_as) else None)
    server = PostgresServer(bin_dir=bin_dir, base=base, run_as=run_as)
    server.init()
    server.start()
    return server


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def remove_server(server: PostgresServer) -> None:
    with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
        server.stop(mode="immediate")
    shutil.rmtree(server.base, ignore_errors=True)
