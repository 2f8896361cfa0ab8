"""The broker's JVM process: PID file, "is this really our broker?", and stopping it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from stream_orch.broker.layout import BrokerLayout


def read_pid(layout: BrokerLayout) -> int | None:
    try:
        return int(layout.pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    """The process's command line, or "" if it is gone (zombies have an empty cmdline too)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return ""
    except OSError:  # no /proc (macOS): ask ps
        out = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True)
        return out.stdout.strip()


def _reap(pid: int) -> None:
    """Collect the exit status if the broker is our own child (tests start it in-process)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_our_broker(pid: int, layout: BrokerLayout) -> bool:
    """A live java process running ``kafka.Kafka`` with *this* layout's config.

    Checking the command line, not just liveness, keeps a recycled PID (after a reboot or a
    crash) from being mistaken for the broker, and never signals someone else's process.
    """
    _reap(pid)
    cmd = _cmdline(pid)
    return "java" in cmd and "kafka.Kafka" in cmd and str(layout.server_properties) in cmd


def running_pid(layout: BrokerLayout) -> int | None:
    """PID of our running broker; a stale or lost PID file is repaired on the way."""
    pid = read_pid(layout)
    if pid is not None and is_our_broker(pid, layout):
        return pid
    found = _find_broker(layout)
    if found is None:
        layout.pid_file.unlink(missing_ok=True)
    else:
        layout.pid_file.write_text(f"{found}\n")
    return found


def _find_broker(layout: BrokerLayout) -> int | None:
    """Our broker by command line (Linux), for when the PID file was deleted or overwritten."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if entry.name.isdigit() and is_our_broker(int(entry.name), layout):
            return int(entry.name)
    return None


def stop(pid: int, layout: BrokerLayout, *, grace_s: float) -> bool:
    """SIGTERM (Kafka shuts down cleanly), then SIGKILL after ``grace_s``. True if it needed the kill."""
    killed = False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, layout, grace_s):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        killed = True
        _wait_gone(pid, layout, 10)
    layout.pid_file.unlink(missing_ok=True)
    return killed


def _wait_gone(pid: int, layout: BrokerLayout, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_our_broker(pid, layout):
            return True
        time.sleep(0.2)
    return not is_our_broker(pid, layout)
