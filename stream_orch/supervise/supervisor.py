"""Run N members, restart the ones that die, drain them all on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from stream_orch.errors import UserError
from stream_orch.settings import Settings
from stream_orch.supervise.aggregate import make_app
from stream_orch.supervise.gate import StartGate
from stream_orch.supervise.members import Member, describe_exit, settings_env

log = logging.getLogger(__name__)

_KILL_GRACE_S = 10.0  # beyond the members' own --stop-timeout, before SIGKILL


def member_dir(state_dir: Path, index: int) -> Path:
    return state_dir / "processes" / str(index)


def plan_members(
    settings: Settings, count: int, run_argv: Sequence[str], env: dict[str, str]
) -> list[Member]:
    """``run_argv``: the member's command line (``python -m stream_orch.cli.main run FILE ...``)."""
    base = {**env, **settings_env(settings)}
    members = []
    for i in range(count):
        folder = member_dir(settings.state_dir, i)
        member_env = {**base, "STREAM_ORCH_STATE_DIR": str(folder)}
        if settings.instance_id:  # a configured id: each member its own, stable across restarts
            member_env["STREAM_ORCH_INSTANCE_ID"] = f"{settings.instance_id}-{i}"
        # otherwise each member's id is derived from its own folder (runtime/membership.py)
        members.append(Member(i, list(run_argv), member_env, folder, serve=settings.metrics_port != 0))
    return members


class Supervisor:
    def __init__(self, settings: Settings, members: list[Member], stop_timeout_s: float) -> None:
        self.settings = settings
        self.members = members
        self.stop_timeout_s = stop_timeout_s
        self._stop = asyncio.Event()
        self._failed: str | None = None

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._forward, signal.SIGHUP)  # reload, in every member
        runner = await self._serve()
        try:
            # started behind a gate: they join their groups together (supervise/gate.py)
            gate = StartGate([m.index for m in self.members])
            for m in self.members:
                await m.start(gate)
            opening = asyncio.ensure_future(gate.open())
            log.warning(
                "supervising %d processes: %s",
                len(self.members),
                ", ".join(f"{m.index}=pid {m.pid}" for m in self.members),
            )
            try:
                await self._watch()
            finally:
                opening.cancel()
                await asyncio.gather(opening, return_exceptions=True)
                gate.close()
            return await self._drain()
        finally:
            if runner is not None:
                await runner.cleanup()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    def _forward(self, sig: int) -> None:
        for m in self.members:
            m.signal(sig)

    async def _serve(self) -> web.AppRunner | None:
        if not self.settings.metrics_port:
            return None
        runner = web.AppRunner(make_app(self.members), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.settings.metrics_host, self.settings.metrics_port).start()
        except OSError as exc:
            await runner.cleanup()
            where = f"{self.settings.metrics_host}:{self.settings.metrics_port}"
            raise UserError(f"cannot serve metrics on {where}: {exc.strerror or exc}") from None
        return runner

    async def _watch(self) -> None:
        """Until a stop is asked for: restart each member that exits, within its budget."""
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            while not self._stop.is_set():
                exits = {m.exited(): m for m in self.members if m.running}
                if not exits:
                    break
                done, _ = await asyncio.wait([stopping, *exits], return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task is not stopping and not self._stop.is_set():
                        await self._restart(exits[task], task.result())
        finally:
            stopping.cancel()

    async def _restart(self, m: Member, returncode: int) -> None:
        if not m.died(returncode):
            self._failed = (
                f"member {m.index} died {m.quick_deaths} times within 30 s of its start "
                f"(last: {describe_exit(returncode)}); stopping the others"
            )
            log.error("%s", self._failed)
            self._stop.set()
            return
        delay = m.backoff_s()
        log.warning("member %d: %s; restarting in %.1f s", m.index, describe_exit(returncode), delay)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)  # a stop during the backoff wins
        if self._stop.is_set():
            return
        await m.start()
        m.restarts += 1

    async def _drain(self) -> int:
        self._forward(signal.SIGTERM)
        running = [m for m in self.members if m.running]
        if running:
            _, late = await asyncio.wait(
                [m.exited() for m in running], timeout=self.stop_timeout_s + _KILL_GRACE_S
            )
            if late:
                self._forward(signal.SIGKILL)
                await asyncio.wait(late)
        codes = [m.exited().result() for m in self.members]
        if self._failed:
            return 1
        bad = [c for c in codes if c != 0]
        return bad[0] if bad and bad[0] > 0 else (1 if bad else 0)
