"""Where a worker's CPU went inside a run, by stage: a py-spy raw profile summed per stage.

    python -m benchmarks profile engine_forward --records 300000 --format raw --rate 1000
    python -m benchmarks.profile_stages benchmarks/results/profile-engine_forward.txt --cpu-us 7.9

``benchmarks.hotpath`` times the node's own stages without Kafka; this adds what only a run has
(the consumer's fetch and record objects, the producer's requests, the socket, the node's loop).
Samples of the start-up (imports, the worker's start) are left out; each stage's share of the
rest is printed, and with ``--cpu-us`` (the run's CPU µs per event, from ``benchmarks run``) as
µs per event. A sample counts for the first stage (in the order of ``STAGES``) one of whose
markers is in its stack; "loop, other" is the node's loop itself, where the lines that await a
batch also free the previous one (its records, events and outputs).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

# (stage, markers: substrings of a py-spy frame "function (file:line)")
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("decode", ("decode_records (",)),
    ("steps", ("run_steps (",)),
    ("route + outbox.add", ("Router.route (",)),
    ("failures", ("FailureRouter.route (",)),
    ("changelog", ("_changelog_records (", "Sealed.changelog (")),
    ("land", ("Sealed.land (",)),  # the batch's table writes into the stores, once acknowledged
    ("produce (record batches)", ("runtime/output.py",)),
    ("fetch (aiokafka)", ("getmany (", "aiokafka/consumer/fetcher.py")),
    ("producer requests (aiokafka)", ("aiokafka/producer/",)),
    ("commit", ("coordinator",)),
    ("network", ("aiokafka/conn.py", "selector_events.py", "asyncio/streams.py")),
    ("restore", ("Restorer.restore (",)),
    ("delivery", ("runtime/delivery.py",)),
    ("metrics", ("prometheus_client", "observ")),
    ("loop, other", ("NodeRunner.", "Handle._run (")),
]
_START_UP = ("_find_and_load", "Worker.start (", "_parser (")


def stages(lines: list[str]) -> tuple[Counter[str], int]:
    """Samples per stage of a raw profile's lines ("frame;frame;... count"), and the samples
    counted (start-up and samples outside the event loop left out)."""
    out: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        if "run_forever (" not in stack or any(m in stack for m in _START_UP):
            continue
        n = int(count)
        total += n
        for name, markers in STAGES:
            if any(m in stack for m in markers):
                out[name] += n
                break
        else:
            out["other"] += n
    return out, total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.profile_stages", description=__doc__.split("\n")[0]
    )
    parser.add_argument("profile", type=Path, help="a py-spy raw profile (benchmarks profile --format raw)")
    parser.add_argument("--cpu-us", type=float, help="the run's CPU µs per event: shares as µs per event")
    args = parser.parse_args(argv)
    try:
        lines = args.profile.read_text().splitlines()
    except OSError as exc:
        raise SystemExit(f"profile_stages: {args.profile}: {exc.strerror}") from None
    counted, total = stages(lines)
    if not total:
        raise SystemExit(f"profile_stages: {args.profile}: no samples inside the event loop")
    print(f"{total:,} samples after start-up")
    print("| stage | share |" + (" µs per event |" if args.cpu_us else ""))
    print("| --- | ---: |" + (" ---: |" if args.cpu_us else ""))
    for name, n in counted.most_common():
        us = f" {n / total * args.cpu_us:.2f} |" if args.cpu_us else ""
        print(f"| {name} | {100 * n / total:.1f} % |{us}")


if __name__ == "__main__":
    main()
