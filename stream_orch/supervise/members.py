"""One member process of a supervised run: how it is started, and its restart budget."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from stream_orch.settings import Settings
from stream_orch.supervise.gate import StartGate

# A member that dies this soon after its start counts against the restart budget; one that ran
# longer was healthy and starts the count again.
QUICK_DEATH_S = 30.0
MAX_QUICK_DEATHS = 5
_PR_SET_PDEATHSIG = 1


def settings_env(settings: Settings) -> dict[str, str]:
    """The supervisor's settings (environment and command-line flags alike) as STREAM_ORCH_*
    variables, so a member runs with exactly the same ones."""
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()  # passed through the environment, never on a command line
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[f"STREAM_ORCH_{name.upper()}"] = str(value)
    return env


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies, even by kill -9, so no member
    outlives it (Linux; elsewhere a no-op)."""
    name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and name:
        ctypes.CDLL(name, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Member:
    index: int
    argv: list[str]
    env: dict[str, str]
    state_dir: Path
    serve: bool  # has an HTTP port of its own (the supervisor's endpoint aggregates it)
    proc: asyncio.subprocess.Process | None = None
    port: int = 0
    started_at: float = 0.0
    restarts: int = 0
    quick_deaths: int = 0
    last_exit: int | None = None
    _waiter: asyncio.Task[int] | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running and self.proc else None

    async def start(self, gate: StartGate | None = None) -> None:
        """``gate``: the first start of a supervised run's members (they join their groups
        together); a restart has none and joins at once."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port() if self.serve else 0
        env = {
            **self.env,
            "STREAM_ORCH_METRICS_PORT": str(self.port),
            "STREAM_ORCH_METRICS_HOST": "127.0.0.1",
        }
        fds: tuple[int, ...] = ()
        if gate is not None:
            gate_env, fd = gate.member_env(self.index)
            env.update(gate_env)
            fds = (fd,)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, env=env, preexec_fn=_die_with_parent, pass_fds=fds
            )
        finally:
            if gate is not None:
                gate.started(self.index)
        self.started_at = time.monotonic()
        self._waiter = asyncio.ensure_future(self.proc.wait())

    def exited(self) -> asyncio.Task[int]:
        assert self._waiter is not None, "not started"
        return self._waiter

    def died(self, returncode: int) -> bool:
        """Record an exit the supervisor did not ask for; False when the restart budget is spent."""
        self.last_exit = returncode
        quick = time.monotonic() - self.started_at < QUICK_DEATH_S
        self.quick_deaths = self.quick_deaths + 1 if quick else 0
        return self.quick_deaths < MAX_QUICK_DEATHS

    def backoff_s(self) -> float:
        """At once after a first death (its partitions wait for it); doubling after quick deaths."""
        return 0.0 if self.quick_deaths <= 1 else min(30.0, 0.5 * 2 ** (self.quick_deaths - 1))

    def signal(self, sig: int) -> None:
        if self.running and self.proc is not None:
            self.proc.send_signal(sig)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"
