"""The supervisor: starts the members, restarts one that dies, forwards signals, serves one endpoint.

SIGTERM/SIGINT are forwarded to every member (each drains its batch and commits as a single
worker does); the supervisor waits for them and exits with the worst of their codes. SIGHUP
(reload) is forwarded. A member that exits while the supervisor is not stopping is restarted
with the same instance id and state folder after a backoff (1 s, doubling, at most 30 s);
one that dies ``max_restarts`` times in a row, each within ``stable_s`` of its start, makes the
supervisor say so in one line, stop the others and exit 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time

from prometheus_client import CollectorRegistry, Counter, Gauge

from stream_orch.supervise.members import MemberPlan, member_env

log = logging.getLogger(__name__)


def exit_code(returncode: int) -> int:
    """A child's return code as a shell reports it (killed by signal N: 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


class Member:
    def __init__(self, plan: MemberPlan) -> None:
        self.plan = plan
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.failures = 0  # deaths in a row, each soon after its start
        self.restarts = 0

    async def start(self) -> None:
        self.plan.state_dir.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(*self.plan.argv, env=member_env(self.plan))
        self.started_at = time.monotonic()

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)


class Supervisor:
    def __init__(
        self,
        plans: list[MemberPlan],
        *,
        max_restarts: int = 5,
        stable_s: float = 60.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.members = [Member(p) for p in plans]
        self.max_restarts = max_restarts
        self.stable_s = stable_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.stop_timeout_s = stop_timeout_s
        self.registry = CollectorRegistry(auto_describe=True)
        self.restarts_total = Counter(
            "stream_orch_supervisor_restarts",
            "Restarts of a member process after it exited unasked",
            ["process"],
            registry=self.registry,
        )
        self.up = Gauge(
            "stream_orch_supervisor_member_up",
            "1 while the member process runs",
            ["process"],
            registry=self.registry,
        )
        self._stopping = asyncio.Event()
        self._failed: str | None = None

    def request_stop(self, sig: int = signal.SIGTERM) -> None:
        if not self._stopping.is_set():
            self._stopping.set()
            for m in self.members:
                m.signal(sig)
            # a member that does not finish within its own stop timeout (and a margin) is killed
            asyncio.get_running_loop().call_later(self.stop_timeout_s + 15, self._kill_all)

    def _kill_all(self) -> None:
        for m in self.members:
            m.signal(signal.SIGKILL)

    def reload(self) -> None:
        for m in self.members:
            m.signal(signal.SIGHUP)

    async def _watch(self, member: Member) -> int:
        """Run ``member`` until the supervisor stops; its last exit code."""
        while True:
            await member.start()
            self.up.labels(member.plan.name).set(1)
            assert member.proc is not None
            code = await member.proc.wait()
            self.up.labels(member.plan.name).set(0)
            if self._stopping.is_set():
                return exit_code(code)
            lived = time.monotonic() - member.started_at
            member.failures = member.failures + 1 if lived < self.stable_s else 1
            if member.failures > self.max_restarts:
                self._failed = (
                    f"member {member.plan.name} ({member.plan.instance_id}) exited {member.failures} times "
                    f"in a row within {self.stable_s:g} s of its start (last code {exit_code(code)}); "
                    "stopping all members"
                )
                self.request_stop()
                return exit_code(code) or 1
            delay = min(self.backoff_s * 2 ** (member.failures - 1), self.max_backoff_s)
            log.warning(
                "member %s exited with code %d; restarting it in %.0f s as %s",
                member.plan.name,
                exit_code(code),
                delay,
                member.plan.instance_id,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return exit_code(code)
            member.restarts += 1
            self.restarts_total.labels(member.plan.name).inc()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        for m in self.members:
            self.restarts_total.labels(m.plan.name)  # every member's series exists from the start
        tasks = [asyncio.create_task(self._watch(m)) for m in self.members]
        try:
            codes = await asyncio.gather(*tasks)
        finally:
            for m in self.members:  # never leave an orphan, whatever went wrong here
                if m.proc is not None and m.proc.returncode is None:
                    m.proc.kill()
                    await m.proc.wait()
        if self._failed:
            print(f"stream-orch: error: {self._failed}", file=sys.stderr)
            return 1
        return max(codes, default=0)
