"""What each member process of a supervisor gets: its command line, instance id, state folder, port.

A member is our own entry point (``python -m stream_orch.cli.main run ...``) in a subprocess,
not a ``multiprocessing`` child: it runs exactly the code path of a single worker (signals,
audit, its own event loop), nothing of the supervisor's state is inherited, and a member that is
killed is restarted from the same command line.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MemberPlan:
    index: int
    instance_id: str  # the static group.instance.id: stable across restarts, so partitions return at once
    state_dir: Path  # its own stores and locks: RocksDB locks never collide between members
    metrics_port: int  # 0: no HTTP server
    argv: tuple[str, ...]

    @property
    def name(self) -> str:
        return str(self.index)


def without_processes(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--processes N`` / ``--processes=N`` (a member is one process)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--processes":
            skip = True
        elif not arg.startswith("--processes="):
            out.append(arg)
    return out


def base_instance_id(configured: str | None, state_dir: Path) -> str:
    """The configured id, or ``<host>-<digest of the state folder>`` (two supervisors on one host
    with folders of their own must not share ids: the broker would have them fence each other)."""
    if configured:
        return configured
    where = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{where}"


def plan(
    argv: Sequence[str], processes: int, state_dir: Path, metrics_port: int, instance_id: str | None
) -> list[MemberPlan]:
    """One plan per member: ``<base>-p<i>``, ``<state_dir>/p<i>``, port ``metrics_port + 1 + i``
    (the supervisor serves ``metrics_port``). The flags appended last win over the user's."""
    base = base_instance_id(instance_id, state_dir)
    args = without_processes(argv)
    plans = []
    for i in range(processes):
        folder = state_dir / f"p{i}"
        port = metrics_port + 1 + i if metrics_port else 0
        member_argv = (
            sys.executable,
            "-m",
            "stream_orch.cli.main",
            *args,
            "--state-dir",
            str(folder),
            "--metrics-port",
            str(port),
            "--metrics-host",  # the supervisor asks them on loopback and serves the user's host itself
            "127.0.0.1",
        )
        plans.append(MemberPlan(i, f"{base}-p{i}", folder, port, member_argv))
    return plans


def member_env(member: MemberPlan) -> dict[str, str]:
    # no flag for the instance id (settings from the environment only): the member's own
    return {**os.environ, "STREAM_ORCH_INSTANCE_ID": member.instance_id}
