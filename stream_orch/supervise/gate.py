"""The supervisor's side of the start gate: its members join their groups together.

Members started one after the other join each consumer group one after the other; on a broker
that forms a group's first generation at once (``group.initial.rebalance.delay.ms=0``) the first
member then takes every partition, works alone and stops again for the rebalance the next one's
join causes. So each member, once prepared (global tables, consumers, stores), says so on a
socket pair it inherited and waits for the supervisor's go, which every member gets at the same
instant: once all are ready, or ``BOUND_S`` after the first one was (a member that never gets
ready must not hold the others forever: the supervisor says so in one line).

Why a socket pair per member: it is private to the two processes (no file to race on or leave
behind), and either end sees the other's death as end-of-file, so a member that dies before it
is ready is simply not waited for, and a member whose supervisor is gone joins at once. A
restarted member gets no gate: it rejoins at once (runtime/membership.py, ``start_gate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Sequence

from stream_orch.runtime.membership import GATE_ENV, GO, READY

log = logging.getLogger(__name__)

BOUND_S = 30.0  # after the first member was ready


class StartGate:
    def __init__(self, indexes: Sequence[int]) -> None:
        self._pairs = {i: socket.socketpair() for i in indexes}
        for parent, _child in self._pairs.values():
            parent.setblocking(False)

    def member_env(self, index: int) -> tuple[dict[str, str], int]:
        """The environment that hands member ``index`` its end, and that end's fd (to pass)."""
        child = self._pairs[index][1]
        child.set_inheritable(True)
        return {GATE_ENV: f"{child.fileno()}:{len(self._pairs)}"}, child.fileno()

    def started(self, index: int) -> None:
        """The member runs: the supervisor's copy of its end is closed (so its death is EOF)."""
        self._pairs[index][1].close()

    async def open(self, bound_s: float = BOUND_S) -> None:
        """Wait until every member is ready (or dead), at most ``bound_s`` after the first was,
        then tell them all to go at once."""
        loop = asyncio.get_running_loop()
        waits = {asyncio.ensure_future(self._ready(i, loop)): i for i in self._pairs}
        first_ready: float | None = None
        pending = set(waits)
        try:
            while pending:
                timeout = None if first_ready is None else max(0.0, first_ready + bound_s - time.monotonic())
                done, pending = await asyncio.wait(
                    pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    late = sorted(waits[t] for t in pending)
                    log.warning(
                        "start gate: member%s %s not ready %.0f s after the first one was; the others "
                        "join their groups without waiting for %s",
                        "s" if len(late) > 1 else "",
                        ", ".join(map(str, late)),
                        bound_s,
                        "them" if len(late) > 1 else "it",
                    )
                    break
                if first_ready is None and any(t.result() for t in done):
                    first_ready = time.monotonic()
        finally:
            for task in pending:
                task.cancel()
            for parent, _child in self._pairs.values():
                with contextlib.suppress(OSError):
                    await loop.sock_sendall(parent, GO)
                parent.close()

    async def _ready(self, index: int, loop: asyncio.AbstractEventLoop) -> bool:
        """True when member ``index`` said it is ready, False when its end closed first."""
        try:
            return await loop.sock_recv(self._pairs[index][0], 1) == READY
        except OSError:
            return False

    def close(self) -> None:
        for parent, child in self._pairs.values():
            parent.close()
            child.close()
