"""A stable static group member id for each worker process (KIP-345 static membership).

A worker killed with kill -9 leaves a member in each of its groups that the coordinator keeps
until its session times out (10 s); a new member would wait for that. A restarted worker that
joins under the same ``group.instance.id`` takes the dead member's place at once and gets its
partitions back without a rebalance of the others.

Workers on one host take the lowest free *slot* of their topology, held by an advisory file
lock under the state folder. The kernel drops the lock when the process dies, however it dies,
so a restarted worker gets its slot, and so its member id, back; a second worker started beside
it gets the next slot. The id is ``<host>-<state folder digest>-<slot>``, or the one configured:
two workers on one host with state folders of their own have slot 0 each, and must still not
share an id (the broker would let each fence the other, over and over).

The price (measured in docs/reliability.md): a static member does not leave its groups on a
clean stop either, so after a SIGTERM without a restart its partitions wait out the session
before another worker takes them. ``STREAM_ORCH_STATIC_MEMBERSHIP=false`` trades the fast
return for a fast hand-over on scale-down.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
from pathlib import Path

MAX_SLOTS = 256


class MemberSlot:
    def __init__(self, path: Path, fd: int, instance_id: str) -> None:
        self.path = path
        self.instance_id = instance_id
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def claim_slot(folder: Path, host: str | None = None) -> MemberSlot:
    """Lock the lowest free slot under ``folder`` and return it (with its member id)."""
    folder.mkdir(parents=True, exist_ok=True)
    host = host or socket.gethostname()
    where = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:8]
    for slot in range(MAX_SLOTS):
        path = folder / f"{slot}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return MemberSlot(path, fd, f"{host}-{where}-{slot}")
    raise RuntimeError(f"all {MAX_SLOTS} worker slots under {folder} are taken")
