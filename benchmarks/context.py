"""What a measurement window ran beside: the machine's state and the contender's own events.

Recorded per run (``context`` in results.json) so that a figure far off its median, or a whole
run off another, can be explained from the JSON: CPU steal (a hypervisor giving our vCPUs to
someone else), the cores' clock (frequency scaling), and the contender's context switches and
page faults per 1k events (a process that is preempted, or that touches fresh memory, does the
same work in more CPU time). The broker's and other processes' cores are in ``window_cores``.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import orjson
import psutil

from benchmarks.procs import process_tree

PROBE_ITEMS = 20_000


def _mhz() -> float:
    """The mean clock of the cores now, from /proc/cpuinfo (0 where it is not reported)."""
    try:
        values = [
            float(line.split(":", 1)[1])
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("cpu MHz")
        ]
    except (OSError, ValueError):
        return 0.0
    return sum(values) / len(values) if values else 0.0


def _faults(pid: int) -> tuple[int, int]:
    """(minor, major) page faults of a process so far, from /proc/PID/stat."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        return int(fields[7]), int(fields[9])  # fields 10 and 12 of proc(5)
    return 0, 0


Sample = tuple[float, float, tuple[int, ...]]


class ContextSampler:
    """Counters of the machine and of a process tree, read at every poll of a measurement."""

    def __init__(self, pids: list[int]) -> None:
        self._roots = [psutil.Process(p) for p in pids]
        self._last: dict[int, tuple[int, int, int, int]] = {}  # pid -> vol, invol, minflt, majflt

    def sample(self) -> Sample:
        """(steal s of the machine, MHz now, the tree's (vol, invol, minflt, majflt) so far)."""
        for proc in process_tree(self._roots):
            try:
                ctx = proc.num_ctx_switches()
            except psutil.Error:
                continue  # gone: its last reading stays
            self._last[proc.pid] = (ctx.voluntary, ctx.involuntary, *_faults(proc.pid))
        tree = tuple(sum(v[i] for v in self._last.values()) for i in range(4))
        return getattr(psutil.cpu_times(), "steal", 0.0), _mhz(), tree  # type: ignore[return-value]


def window_context(window: list[Sample], dt: float, events: int) -> dict[str, Any]:
    """The context of a window from its samples (first to last): steal in cores, the clock's
    min and mean, the contender's context switches and page faults per 1k events."""
    a, b = window[0], window[-1]
    per_1k = 1000 / max(events, 1)
    dt = max(dt, 1e-9)
    vol, invol, minflt, majflt = (y - x for x, y in zip(a[2], b[2], strict=True))
    readings = [s[1] for s in window if s[1] > 0] or [0.0]
    return {
        "steal_cores": round((b[0] - a[0]) / dt, 3),
        "mhz_min": round(min(readings)),
        "mhz_mean": round(sum(readings) / len(readings)),
        "ctx_voluntary_per_1k": round(vol * per_1k, 1),
        "ctx_involuntary_per_1k": round(invol * per_1k, 1),
        "minflt_per_1k": round(minflt * per_1k, 1),
        "majflt_per_1k": round(majflt * per_1k, 2),
    }


def cpu_probe(repeat: int = 3) -> float:
    """CPU µs per item of a fixed pure-Python workload (build, encode and decode a small record
    and index it, as a worker does per event): best of ``repeat``. The same code costs more CPU
    time when the machine's caches and cores are shared with busier neighbours (the hypervisor's
    too, which steal does not show), so a run's CPU per event is read beside it."""
    best = float("inf")
    for _ in range(repeat):
        index: dict[str, object] = {}
        t0 = time.process_time_ns()
        for i in range(PROBE_ITEMS):
            record = {"id": f"t{i}", "account": i % 997, "amount": i * 1.25, "tags": ["a", str(i)]}
            index[record["id"]] = orjson.loads(orjson.dumps(record))  # type: ignore[index]
        best = min(best, (time.process_time_ns() - t0) / 1000 / PROBE_ITEMS)
    return round(best, 3)
