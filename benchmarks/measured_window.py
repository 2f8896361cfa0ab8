"""The measured window of a run: which polls it spans, and its throughput and CPU per event.

The polls are (time, output count, CPU seconds) samples, taken by :mod:`benchmarks.measure`
every ``POLL_S``; with j the first poll that sees any output and k the last poll before the
output is complete, the window is j..k (its docstring says why).
"""

from __future__ import annotations

import itertools
from typing import Any


def group_start(samples: list[tuple[float, int, float]], ready_at: float | None, expected: int) -> int:
    """The first sample of the window when a group of several members was complete at ``ready_at``:
    the last poll before it (0: never complete, or everything was out before it was)."""
    if ready_at is None:
        return 0
    skip = max(0, sum(1 for s in samples if s[0] < ready_at) - 1)
    return 0 if samples[skip][1] >= expected else skip


def _cpu_at(samples: list[tuple[float, int, float]], count: float) -> float:
    """CPU seconds when the output count reached ``count``, interpolated between the two polls
    around it (``samples`` in time order, counts not decreasing)."""
    for (_, c0, u0), (_, c1, u1) in itertools.pairwise(samples):
        if c0 <= count <= c1:
            return u0 if c1 == c0 else u0 + (u1 - u0) * (count - c0) / (c1 - c0)
    return samples[-1][2] if count >= samples[-1][1] else samples[0][2]


def by_tenth(samples: list[tuple[float, int, float]]) -> list[float]:
    """CPU µs per event over each tenth of the outputs of ``samples`` (the window's polls).

    Whether the cost per event moves along a run: issue 25's fraud worker cost 20 µs per event
    at 100k records and 31 at 1 M, and one figure per run cannot tell a cost that grows with the
    run (state, heap) from one that is higher throughout (more keys in the data). CPU readings
    are in clock ticks (10 ms): a tenth of a short run is rough."""
    first, last = samples[0][1], samples[-1][1]
    if last - first < 10:
        return []
    marks = [first + (last - first) * i / 10 for i in range(11)]
    cpu = [_cpu_at(samples, m) for m in marks]
    return [round((b - a) / ((last - first) / 10) * 1e6, 1) for a, b in itertools.pairwise(cpu)]


def sustained(samples: list[tuple[float, int, float]], expected: int) -> dict[str, Any]:
    """Throughput and CPU per 1k events from (time, output count, cpu seconds) samples."""
    j = next(i for i, s in enumerate(samples) if s[1] > 0)
    k = max(i for i, s in enumerate(samples) if s[1] < expected) if samples[j][1] < expected else j
    coarse = k - j < 2
    if coarse:  # output completed within a couple of polls: use the whole span, a lower bound
        j0 = max(0, j - 1)
        done = next(i for i, s in enumerate(samples) if s[1] >= expected)
        (t0, c0, u0), (t1, c1, u1) = samples[j0], samples[done]
    else:
        (t0, c0, u0), (t1, c1, u1) = samples[j], samples[k]
    events = max(1, c1 - c0)
    return {
        "window": (j0, done) if coarse else (j, k),
        "throughput_eps": events / max(t1 - t0, 1e-9),
        "cpu_s_per_1k": (u1 - u0) / events * 1000,
        "window_events": events,
        "window_s": t1 - t0,
        "coarse": coarse,
        "cpu_us_by_tenth": [] if coarse else by_tenth(samples[j : k + 1]),
    }
