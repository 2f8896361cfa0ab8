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

aiokafka sends no LeaveGroup for a static member; on a clean stop the node makes it send one
(``transport.clients.stop_consumer(leave=True)``, measured in docs/reliability.md), so the
others take its partitions within a heartbeat. ``STREAM_ORCH_STATIC_MEMBERSHIP=false`` gives
up the fast return after a crash.

The members of one ``run --processes N`` supervisor start behind a gate (:func:`start_gate`):
each prepares, then all join their groups at the same instant, so each group's first generation
can hold them all (stream_orch/transport/first_join.py makes sure it does).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import socket
from pathlib import Path

MAX_SLOTS = 256
log = logging.getLogger(__name__)


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


# The start gate of ``run --processes N`` (the supervisor's side: stream_orch/supervise/gate.py).
# The supervisor hands each member it starts (not one it restarts) "<fd>:<members>" in GATE_ENV.
GATE_ENV = "STREAM_ORCH_START_GATE"
READY = b"r"
GO = b"g"
GATE_BOUND_S = 120.0  # the supervisor's own bound is shorter; this one only guards against a hung one


async def start_gate() -> int:
    """Say this member is ready and wait for the supervisor's go; return how many members start
    together (1 when this process was not started behind a gate: alone, or restarted).

    A closed gate (the supervisor gone) or a go that does not come within ``GATE_BOUND_S`` lets
    the member join at once: waiting longer would only keep its partitions idle."""
    value = os.environ.pop(GATE_ENV, "")
    fd, _, count = value.partition(":")
    if not fd.isdigit() or not count.isdigit():
        return 1
    loop = asyncio.get_running_loop()
    try:
        sock = socket.socket(fileno=int(fd))
    except OSError:
        return 1
    with sock:
        sock.setblocking(False)
        try:
            await loop.sock_sendall(sock, READY)
            await asyncio.wait_for(loop.sock_recv(sock, 1), GATE_BOUND_S)
        except (OSError, TimeoutError):
            log.warning("start gate: no go from the supervisor; joining now")
    return max(1, int(count))
