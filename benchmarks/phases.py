"""Where a batch's time goes, read from a benchmark worker's /metrics.

    BENCH_ENGINE_METRICS_PORT=9464 python -m benchmarks run --only engine_fraud ... &
    python -m benchmarks.phases --port 9464 --out phases.txt

Scrapes ``stream_orch_batch_phase_seconds`` every half second while the run lasts and keeps each
worker process's last scrape (a count that went down, or other nodes: the next worker); prints per
worker and phase the batches observed and p50/p99 interpolated in the histogram's buckets (so
no finer than the buckets: 1, 2.5, 5, 10, 25, 50, 100, 250 ms...).
"""

from __future__ import annotations

import argparse
import time
import urllib.request
from collections import defaultdict

from prometheus_client.parser import text_string_to_metric_families

FAMILY = "stream_orch_batch_phase_seconds"


def scrape(port: int) -> dict[tuple[str, str], list[tuple[float, float]]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as resp:
            text = resp.read().decode()
    except OSError:
        return None
    buckets: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        if family.name == FAMILY:
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    key = (s.labels["node"], s.labels["phase"])
                    buckets[key].append((float(s.labels["le"]), s.value))
    return buckets


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    buckets = sorted(buckets)
    total = buckets[-1][1]
    if not total:
        return 0.0
    rank, lower, below = q * total, 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * ((rank - below) / max(count - below, 1e-9))
        lower, below = le, count
    return lower


def _count(buckets: dict[tuple[str, str], list[tuple[float, float]]]) -> float:
    return sum(max(c for _, c in b) for b in buckets.values())


def report(last: list[dict[tuple[str, str], list[tuple[float, float]]]]) -> str:
    lines = []
    for n, buckets in enumerate(last):
        lines.append(f"worker {n + 1}")
        for (node, phase), b in sorted(buckets.items()):
            count = max(c for _, c in b)
            p50, p99 = quantile(b, 0.5) * 1000, quantile(b, 0.99) * 1000
            lines.append(f"  {node:12} {phase:15} batches {count:6.0f}  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9464)
    parser.add_argument("--seconds", type=float, default=600.0, help="stop scraping after this long")
    parser.add_argument("--out", default="-")
    args = parser.parse_args()
    last: list[dict[tuple[str, str], list[tuple[float, float]]]] = []
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        got = scrape(args.port)
        if got:
            before = last[-1] if last else None
            if (
                before is None
                or _count(got) < _count(before)
                or {k[0] for k in got} != {k[0] for k in before}
            ):
                last.append(got)
            else:
                last[-1] = got
            if args.out != "-":
                with open(args.out, "w") as f:
                    f.write(report(last) + "\n")
        time.sleep(0.5)
    print(report(last))


if __name__ == "__main__":
    main()
