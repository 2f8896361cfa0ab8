"""Records per second of the fraud topology through the topology test driver (no broker).

    .venv/bin/python -m benchmarks.driver [--transactions 50000] [--customers 2000] [--rounds 3]

Each round builds a fresh :class:`~stream_orch.testing.TopologyTestDriver`, pipes the profiles
and processes them, then pipes the transactions (the benchmark data set of ``benchmarks.data``:
the harmonise variants, a share of invalid records and of fraud patterns) and processes them;
the rate is transactions over the wall time of piping and processing them, with the CPU time
beside it. Unknown customers would wait in the retry tiers and are not counted as processed
until the clock moves, so the data set only uses known ones. Prints one line per round and the
median.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import time

from benchmarks.data import make_dataset
from benchmarks.machine import cpu_model
from stream_orch.codecs.schemas import DEFAULT_SCHEMA_DIR
from stream_orch.testing import TopologyTestDriver
from stream_orch.topology.loader import load_topology

REPO_TOPOLOGY = DEFAULT_SCHEMA_DIR.parent / "topologies" / "fraud_detection.yaml"


def one_round(transactions: list[dict], customers: list[dict]) -> tuple[float, float, dict]:
    loaded = load_topology(REPO_TOPOLOGY, env={"STREAM_ORCH_MASK_KEY": "bench"})
    with TopologyTestDriver(loaded, schemas=DEFAULT_SCHEMA_DIR, start_ms=1_767_225_600_000) as driver:
        driver.pipe_many("customers", customers)
        driver.process()
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        driver.pipe_many("transactions", transactions)
        driver.process()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        stats = driver.stats("score_transactions")
    return wall, cpu, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transactions", type=int, default=50_000)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = make_dataset(args.transactions, customers=args.customers)
    print(
        f"fraud topology through TopologyTestDriver: {len(data.transactions)} transactions, "
        f"{len(data.customers)} profiles; {cpu_model()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    rates = []
    for n in range(1, args.rounds + 1):
        wall, cpu, stats = one_round(data.transactions, data.customers)
        rate = len(data.transactions) / wall
        rates.append(rate)
        outputs = sum(stats["outputs"].values())
        dead = sum(stats["dead_lettered"].values())
        print(
            f"  round {n}: {rate:,.0f} records/s ({wall:.2f} s wall, {cpu:.2f} s CPU, "
            f"{cpu / len(data.transactions) * 1e6:.1f} µs CPU/record); {outputs} outputs, "
            f"{dead} dead letters, {sum(stats['dropped'].values())} dropped"
        )
    print(f"median: {statistics.median(rates):,.0f} records/s")


if __name__ == "__main__":
    main()
