"""The per-window context a benchmark run records: the contender's page faults and context
switches read from /proc and psutil, and their rates per 1k events over a window."""

from __future__ import annotations

import mmap
import os
import sys

import pytest

from benchmarks.context import ContextSampler, cpu_probe, window_context


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")
def test_faults_of_fresh_memory_show_in_the_window() -> None:
    sampler = ContextSampler([os.getpid()])
    first = sampler.sample()
    # 64 MB of fresh pages: thousands of minor faults when written. A fresh anonymous mapping with
    # huge pages refused (with transparent huge pages a 2 MB page faults once: the fresh-clone CI
    # saw 8 faults for a bytearray here)
    touched = mmap.mmap(-1, 64 << 20)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        touched.madvise(mmap.MADV_NOHUGEPAGE)
    for i in range(0, len(touched), 4096):
        touched[i] = 1
    touched.close()
    last = sampler.sample()
    ctx = window_context([first, last], dt=2.0, events=1000)
    assert ctx["minflt_per_1k"] >= (64 << 20) // 4096 / 4, "a page written for the first time faults"
    assert ctx["majflt_per_1k"] >= 0 and ctx["ctx_voluntary_per_1k"] >= 0
    assert ctx["mhz_min"] <= ctx["mhz_mean"]


def test_window_context_rates() -> None:
    a = (10.0, 2000.0, (100, 10, 5000, 1))
    mid = (10.5, 1500.0, (150, 12, 6000, 1))
    b = (11.0, 2500.0, (300, 30, 9000, 3))
    ctx = window_context([a, mid, b], dt=4.0, events=2000)
    assert ctx == {
        "steal_cores": 0.25,
        "mhz_min": 1500,
        "mhz_mean": 2000,
        "ctx_voluntary_per_1k": 100.0,
        "ctx_involuntary_per_1k": 10.0,
        "minflt_per_1k": 2000.0,
        "majflt_per_1k": 1.0,
    }


def test_cpu_probe_measures_work() -> None:
    us = cpu_probe(repeat=1)
    assert 0 < us < 1_000, "µs of CPU per item of a small fixed workload"
