"""Interleaved rounds and what is reported from them: medians with their spread, per-round ratios.

Why rounds: on a shared 2-core machine the load from other processes comes and goes within
seconds, and a contender's throughput window is only a few seconds long, so one contender can
be measured in a quiet moment and the next in a busy one. Each round runs every contender once,
in an order rotated by one per round (A B C, B C A, C A B, ...), so no contender always runs
first (right after the data was written) or always after the slowest one. A ratio is taken
within a round (the two runs were minutes apart at most) and the median over rounds is
reported, with the min-max of the per-round values beside it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any


def rotation(names: Sequence[str], rounds: int) -> list[list[str]]:
    """The contender order of each round: round r starts at name r (mod len) and wraps around."""
    n = len(names)
    if n == 0:
        return [[] for _ in range(rounds)]
    return [[names[(r + i) % n] for i in range(n)] for r in range(rounds)]


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (q in 0..1) of an ascending list, as numpy's default."""
    if not sorted_values:
        return math.nan
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def spread(values: Iterable[float]) -> dict[str, Any]:
    """Median, min, max, quartiles and the relative spread (max - min) / median of some values."""
    xs = sorted(v for v in values if v is not None and not math.isnan(v))
    if not xs:
        return {"n": 0, "median": None, "min": None, "max": None, "q1": None, "q3": None, "rel": None}
    median = statistics.median(xs)
    return {
        "n": len(xs),
        "median": median,
        "min": xs[0],
        "max": xs[-1],
        "q1": quantile(xs, 0.25),
        "q3": quantile(xs, 0.75),
        # how far apart the extremes are, relative to the median: 0.1 = the runs agree to 10 %
        "rel": (xs[-1] - xs[0]) / median if median else None,
    }


def per_round(runs: Iterable[dict[str, Any]], key: str = "throughput_eps") -> dict[int, float]:
    """{round: value} of a contender's good runs (a failed run has no value for its round)."""
    return {r["round"]: r[key] for r in runs if "error" not in r and r.get(key) and "round" in r}


def round_ratios(
    num_runs: Iterable[dict[str, Any]], den_runs: Iterable[dict[str, Any]], key: str = "throughput_eps"
) -> list[float]:
    """num / den of ``key`` within each round both have a good run in, in round order."""
    num, den = per_round(num_runs, key), per_round(den_runs, key)
    return [num[r] / den[r] for r in sorted(num.keys() & den.keys())]


def ratio_summary(
    num_runs: Iterable[dict[str, Any]], den_runs: Iterable[dict[str, Any]], key: str = "throughput_eps"
) -> dict[str, Any]:
    """The median of the per-round ratios with their spread (``n`` = rounds that had both)."""
    return spread(round_ratios(num_runs, den_runs, key))


def fmt_spread(s: dict[str, Any], fmt: str = "{:,.0f}") -> str:
    """``median (min-max)``; just the median when there is one value; ``-`` when none."""
    if not s or s.get("median") is None:
        return "-"
    if s["n"] == 1:
        return fmt.format(s["median"])
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}-{fmt.format(s['max'])})"
