"""The `model` step's cost, without Kafka (issue 22): the step alone, and the fraud node with and
without its model term, side by side in one run.

    python -m benchmarks.model_step                   # 200k records, batches of 2,000, best of 5
    python -m benchmarks.model_step --records 100000 --repeat 3

* **model step alone**: the fraud topology's `model` step (topologies/models/fraud.onnx, four
  features from expressions, as the topology feeds it) over records that already carry the
  fields it reads, in batches of 2,000; records per second of process CPU time (one core: the
  session runs on one thread). Target: >= 100,000/s.
* **fraud node with / without the model**: :mod:`benchmarks.hotpath`'s fraud node (decode, every
  step, routing with lineage, changelog, produce to a stand-in) on the benchmark data set, once
  as shipped and once with the model step and its score rule taken out; CPU µs per input record,
  the two alternated per repetition and the best of each kept. Throughput ratio = without / with.
  Target: >= 0.8. This is the per-record CPU path of a worker, not an end-to-end run through the
  broker (``python -m benchmarks run`` measures that for `engine_fraud`).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import time
from typing import Any

from benchmarks import hotpath
from benchmarks.contenders.engine import drop_models
from benchmarks.machine import cpu_model
from stream_orch.codecs.schemas import DEFAULT_SCHEMA_DIR, SchemaRegistry
from stream_orch.steps.base import Event
from stream_orch.steps.registry import build_step
from stream_orch.topology.loader import load_topology
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.models_model import ModelStep

FRAUD, NODE = hotpath.TOPOLOGIES["fraud"]
BATCH = 2000


class _Ctx:
    """The step context for a step that rejects nothing on this data (counted if it does)."""

    topology, node, constants = "bench", NODE, {}

    def __init__(self) -> None:
        self.rejected = 0

    def reject(self, event: Event, reason: str, error: BaseException | None = None) -> None:
        self.rejected += 1

    retry = reject


def without_model(spec: TopologySpec) -> TopologySpec:
    """The fraud topology with its model step and the score rules reading its output taken out."""
    data = spec.model_dump(mode="python", by_alias=True, exclude_unset=True)
    drop_models(data)
    out = TopologySpec.model_validate(data)
    out._folder = spec._folder
    return out


def model_alone(n: int, repeat: int) -> tuple[float, int]:
    """Records per CPU second of the fraud topology's model step alone, best of ``repeat``."""
    spec = load_topology(FRAUD).spec
    [index] = [i for i, s in enumerate(spec.nodes[NODE].steps) if isinstance(s, ModelStep)]
    step = build_step(
        spec.nodes[NODE].steps[index],
        topology_spec=spec,
        schemas=SchemaRegistry(DEFAULT_SCHEMA_DIR),
        node_name=NODE,
    )
    rng = random.Random(5)
    countries = ["DE", "FR", "GB", "US"]
    records = [
        {
            "amount_eur": round(rng.uniform(1, 5000), 2),
            "avg_amount": round(rng.uniform(20, 400), 2),
            "velocity_60s": rng.randint(1, 8),
            "country": rng.choice(countries),
            "home_country": rng.choice(countries),
            "channel": rng.choice(["card_present", "online", "atm"]),
        }
        for _ in range(n)
    ]
    batches = [
        [Event(value=r, offset=i) for i, r in enumerate(records[s : s + BATCH])] for s in range(0, n, BATCH)
    ]
    ctx = _Ctx()
    best = float("inf")
    gc.collect()
    gc.freeze()
    for _ in range(repeat):
        t0 = time.process_time()
        for batch in batches:
            _run(step, batch, ctx)
        best = min(best, time.process_time() - t0)
    gc.unfreeze()
    return n / best, ctx.rejected


def _run(step: Any, batch: list[Event], ctx: _Ctx) -> None:
    """Run the step's coroutine to its end without an event loop (it awaits nothing)."""
    coroutine = step.run(batch, ctx)
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise RuntimeError("the model step awaited something")


def with_and_without(n: int, repeat: int) -> tuple[dict[str, float], dict[str, float]]:
    """CPU µs per record per stage of the fraud node as shipped and without the model, best of each
    over alternated repetitions."""
    shipped = load_topology(FRAUD).spec
    variants = {"with": shipped, "without": without_model(shipped)}
    best: dict[str, dict[str, float]] = {}
    for _ in range(repeat):
        for name, spec in variants.items():
            table, _ = hotpath.measure("fraud", n, 1, spec)
            total = sum(table.values())
            if name not in best or total < sum(best[name].values()):
                best[name] = table
    return best["with"], best["without"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.model_step", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--fraud-records", type=int, default=40_000)
    args = parser.parse_args(argv)
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical cores")
    rate, rejected = model_alone(args.records, args.repeat)
    print(
        f"model step alone: {rate:,.0f} records/s of CPU (one core), batches of {BATCH:,}, "
        f"{args.records:,} records, best of {args.repeat}; rejected {rejected}"
    )
    with_model, without = with_and_without(args.fraud_records, args.repeat)
    t_with, t_without = sum(with_model.values()), sum(without.values())
    print(f"fraud node, CPU µs per input record ({args.fraud_records:,} records, best of {args.repeat}):")
    print("| stage | with model | without |\n| --- | ---: | ---: |")
    for stage in dict.fromkeys([*with_model, *without]):
        print(f"| {stage} | {with_model.get(stage, 0):.2f} | {without.get(stage, 0):.2f} |")
    print(f"| **total** | **{t_with:.2f}** | **{t_without:.2f}** |")
    print(f"throughput with / without the model: {t_without / t_with:.3f} (target >= 0.8)")


if __name__ == "__main__":
    main()
