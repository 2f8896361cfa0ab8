"""The start gate of `run --processes N`: both sides over real socket pairs, members played by
coroutines of this process (the fd handed over is the one a member would inherit)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket

import pytest

from stream_orch.runtime.membership import GATE_ENV, GO, READY, start_gate
from stream_orch.supervise.gate import StartGate


def _member_end(gate: StartGate, index: int) -> socket.socket:
    env, fd = gate.member_env(index)
    assert env[GATE_ENV] == f"{fd}:{len(gate._pairs)}"
    end = socket.socket(fileno=os.dup(fd))
    gate.started(index)
    end.setblocking(False)
    return end


async def _say_ready_then_read(end: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(end, READY)
    return await loop.sock_recv(end, 1)


async def test_go_only_once_every_member_is_ready() -> None:
    gate = StartGate([0, 1])
    first, second = _member_end(gate, 0), _member_end(gate, 1)
    opening = asyncio.ensure_future(gate.open())
    first_go = asyncio.ensure_future(_say_ready_then_read(first))
    await asyncio.sleep(0.05)
    assert not first_go.done() and not opening.done()  # member 1 is still preparing
    assert await _say_ready_then_read(second) == GO
    assert await first_go == GO
    await opening
    first.close()
    second.close()


async def test_a_member_that_died_before_it_was_ready_is_not_waited_for() -> None:
    gate = StartGate([0, 1])
    alive, dead = _member_end(gate, 0), _member_end(gate, 1)
    dead.close()
    opening = asyncio.ensure_future(gate.open())
    assert await _say_ready_then_read(alive) == GO
    await opening
    alive.close()


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_a_member_never_ready_holds_the_others_only_until_the_bound() -> None:
    gate = StartGate([0, 1])
    ready, stuck = _member_end(gate, 0), _member_end(gate, 1)
    said = _Lines()
    logger = logging.getLogger("stream_orch.supervise.gate")
    # not caplog: other tests' logging set-up may disable this logger or stop its propagation
    disabled, level = logger.disabled, logger.level
    logger.disabled = False
    logger.setLevel(logging.WARNING)
    logger.addHandler(said)
    try:
        opening = asyncio.ensure_future(gate.open(bound_s=0.05))
        assert await _say_ready_then_read(ready) == GO
        await opening
    finally:
        logger.removeHandler(said)
        logger.disabled, logger.level = disabled, level
    assert len(said.lines) == 1 and "member 1 not ready" in said.lines[0], said.lines
    # the stuck member still gets its go (it joins when it is ready)
    assert await asyncio.get_running_loop().sock_recv(stuck, 1) == GO
    ready.close()
    stuck.close()


async def test_member_side_waits_for_go_and_returns_the_member_count(monkeypatch: pytest.MonkeyPatch) -> None:
    parent, child = socket.socketpair()
    monkeypatch.setenv(GATE_ENV, f"{child.detach()}:2")
    waiting = asyncio.ensure_future(start_gate())
    loop = asyncio.get_running_loop()
    parent.setblocking(False)
    assert await loop.sock_recv(parent, 1) == READY
    assert not waiting.done()
    await loop.sock_sendall(parent, GO)
    assert await waiting == 2
    assert GATE_ENV not in os.environ  # a member it starts (none today) would not wait again
    parent.close()


async def test_member_side_joins_at_once_when_the_supervisor_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    parent, child = socket.socketpair()
    monkeypatch.setenv(GATE_ENV, f"{child.detach()}:3")
    parent.close()
    assert await start_gate() == 3


@pytest.mark.parametrize("value", ["", "x:2", "5", "nonsense"])
async def test_member_side_without_a_gate_is_alone(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(GATE_ENV, value)
    assert await start_gate() == 1
