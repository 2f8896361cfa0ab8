"""Starting, watching and always stopping contender processes.

Each contender runs in its own session (process group), so stopping it stops whatever it
spawned. Every process started here is tracked and stopped on exit, on SIGTERM/SIGINT and on
any error: a benchmark must never leave workers behind.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
_live: dict[int, subprocess.Popen] = {}


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the harness dies, even by SIGKILL (Linux only).

    The child runs in its own session (so stopping it stops its group), which also means no
    terminal signal reaches it; without this, a killed harness would leave workers running.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


class Worker:
    """One contender process with its log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        full_env = {**os.environ, **env}
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            argv,
            env=full_env,
            cwd=REPO,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        _live[self.proc.pid] = self.proc
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, grace_s: float = 10.0) -> None:
        _stop(self.proc, grace_s)
        self._log_file.close()


def _stop(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM to the group, then SIGKILL after the grace period; waits for the process."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace_s)
    # the group may hold children even after the leader exited
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    _live.pop(proc.pid, None)


def stop_all() -> None:
    for proc in list(_live.values()):
        _stop(proc, 3.0)


def _on_signal(signum: int, _frame: object) -> None:
    stop_all()
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    """Stop every tracked process at exit and on SIGTERM/SIGINT (call once, from the CLI)."""
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


def process_tree(roots: list[psutil.Process]) -> list[psutil.Process]:
    """Each root and its descendants now; a root that is gone is left out."""
    procs: list[psutil.Process] = []
    for root in roots:
        try:
            procs += [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
    return procs


class TreeSampler:
    """CPU seconds and RSS of some processes and all their descendants.

    CPU time is remembered per pid, so a child that has exited still counts with its last
    reading. RSS is the sum over the live tree at each sample; ``peak_rss`` is the largest sum.
    """

    def __init__(self, pids: list[int]) -> None:
        self._roots = [psutil.Process(p) for p in pids]
        self._cpu: dict[int, float] = {}
        self.rss = 0
        self.peak_rss = 0

    def sample(self) -> float:
        rss = 0
        for proc in process_tree(self._roots):
            try:
                with proc.oneshot():
                    t = proc.cpu_times()
                    mem = proc.memory_info().rss
            except psutil.Error:
                continue
            self._cpu[proc.pid] = t.user + t.system
            rss += mem
        self.rss = rss
        self.peak_rss = max(self.peak_rss, rss)
        return self.cpu()

    def cpu(self) -> float:
        return sum(self._cpu.values())


def _busy_s(t: Any) -> float:
    """CPU seconds the machine spent on anything but idle and iowait (all cores together)."""
    return sum(getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


class HostSampler:
    """CPU seconds of the whole machine, of the broker and of the harness itself, sampled together.

    Between two samples, machine - broker - harness - contender is what *other* processes used:
    on a shared machine that is the load a throughput figure competed with, and the figure to
    look at when a run is far off its median.
    """

    def __init__(self, broker_pids: list[int]) -> None:
        self._brokers = [p for p in map(_process, broker_pids) if p is not None]
        self._self = psutil.Process()

    def sample(self) -> tuple[float, float, float]:
        """(machine busy, broker, harness) CPU seconds so far."""
        broker = 0.0
        for process in self._brokers:  # every broker of a local cluster
            with contextlib.suppress(psutil.Error):
                t = process.cpu_times()
                broker += t.user + t.system
        own = self._self.cpu_times()
        return _busy_s(psutil.cpu_times()), broker, own.user + own.system


def _process(pid: int | None) -> psutil.Process | None:
    if pid is None:
        return None
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def host_cores(a: tuple[float, float, float], b: tuple[float, float, float], dt: float) -> dict[str, float]:
    """Cores busy between two :class:`HostSampler` samples: machine, broker, harness, and the rest."""
    dt = max(dt, 1e-9)
    machine, broker, harness = ((y - x) / dt for x, y in zip(a, b, strict=True))
    return {"machine": machine, "broker": broker, "harness": harness}


def window_cores(
    host_a: tuple[float, float, float], host_b: tuple[float, float, float], contender_cpu_s: float, dt: float
) -> dict[str, float]:
    """Cores busy over a measurement window: machine, broker, harness, contender, and others, i.e.
    what other processes on the machine used: the load the window's figure competed with."""
    cores = host_cores(host_a, host_b, dt)
    cores["contender"] = contender_cpu_s / max(dt, 1e-9)
    cores["others"] = max(0.0, cores["machine"] - cores["broker"] - cores["harness"] - cores["contender"])
    return {k: round(v, 3) for k, v in cores.items()}


async def wait_quiet(
    broker_pids: list[int],
    *,
    broker_max: float = 0.15,
    others_max: float = 0.35,
    window_s: float = 0.5,
    timeout_s: float = 20.0,
    others_timeout_s: float = 5.0,
) -> dict[str, Any]:
    """Wait (bounded) until the broker, and if possible everything else, is nearly idle.

    After a run the broker still deletes the run's topics and a previous contender may still be
    exiting; starting the next measurement then would charge that work to it, so the broker gets
    up to ``timeout_s``. Other processes (test suites of other engineers) are not ours to wait
    out and may never go quiet: they get ``others_timeout_s``, after which the run goes on and
    its figures say how busy the machine was. Returns the last window's cores and the wait.
    """
    sampler = HostSampler(broker_pids)
    started = time.perf_counter()
    prev, t_prev = sampler.sample(), started
    while True:
        await asyncio.sleep(window_s)
        now_sample, now = sampler.sample(), time.perf_counter()
        cores = host_cores(prev, now_sample, now - t_prev)
        others = max(0.0, cores["machine"] - cores["broker"] - cores["harness"])
        waited = now - started
        broker_ok = cores["broker"] <= broker_max
        others_ok = others <= others_max
        if (broker_ok and (others_ok or waited >= others_timeout_s)) or waited >= timeout_s:
            return {
                "waited_s": round(waited, 2),
                "broker_cores": round(cores["broker"], 3),
                "other_cores": round(others, 3),
                "quiet": broker_ok and others_ok,
            }
        prev, t_prev = now_sample, now
