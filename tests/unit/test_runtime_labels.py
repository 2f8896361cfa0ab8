"""Issue 12, item 4: metric labels take values from bounded sets, never from records. A thousand
distinct bad values go through a real step, the failure routing and the observer; the number of
series does not move."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
from step_harness import MemoryTable, build, topology, txn

from stream_orch.observability.health import HealthState
from stream_orch.observability.metrics import OTHER, Metrics, label_code
from stream_orch.runtime.batch import BatchStats, NodeContext
from stream_orch.runtime.failures import FailureRouter
from stream_orch.runtime.observer import NodeObserver
from stream_orch.runtime.output import Outbox, PartitionMap
from stream_orch.steps.base import Event

SUM = {"step": "aggregate", "table": "t", "key": "account_id", "window": "60s", "function": "sum",
       "field": "amount", "as": "sum_60s"}  # fmt: skip


def _series(m: Metrics) -> set[tuple[str, tuple]]:
    return {
        (s.name, tuple(sorted(s.labels.items())))
        for family in m.registry.collect()
        for s in family.samples
        if s.name in ("stream_orch_errors_total", "stream_orch_dead_lettered_total")
    }


async def _bad_batch(values: list[str], metrics: Metrics) -> list:
    spec = topology()
    step = build(SUM)
    ctx = NodeContext(spec.topology, "n", {}, {"t": MemoryTable("t")})
    ctx.step = "1.aggregate"  # as the pipeline labels the step it runs
    events = [
        Event(value=txn(amount=v), raw_value=orjson.dumps(txn(amount=v)), topic="transactions", offset=i)
        for i, v in enumerate(values)
    ]
    await step.run(events, ctx)  # every one rejected: "invalid_field: amount must be a number (got ...)"
    stats = BatchStats(n_in=len(values))
    outbox = Outbox(PartitionMap({"transactions.dlq": 1}))
    FailureRouter(spec, "n").route(ctx.failures, outbox, stats, now=0)
    runner = SimpleNamespace(name="n", node=spec.nodes["n"], local_tables=[])
    NodeObserver(metrics, HealthState()).batch_done(runner, stats)  # type: ignore[arg-type]
    return ctx.failures


async def test_a_thousand_distinct_bad_values_make_no_new_series() -> None:
    metrics = Metrics()
    failures = await _bad_batch([f"not-a-number-{i}" for i in range(10)], metrics)
    assert "not-a-number-3" in failures[3].reason, "the DLQ reason keeps the value"
    before = _series(metrics)
    await _bad_batch([f"bad-value-{i}" for i in range(1000)], metrics)
    after = _series(metrics)
    assert after == before, f"new series: {sorted(after - before)[:5]}"
    labels = {value for _name, items in after for _label, value in items}
    assert labels == {"n", "invalid_field", "1.aggregate"}, labels
    assert not any("bad-value" in v or "not-a-number" in v for v in labels)


def test_label_code_is_the_reason_s_code_or_other() -> None:
    assert label_code("invalid_field: amount must be a number (got 'x')") == "invalid_field"
    assert label_code("output_schema_violation: out.amount: expected double") == "output_schema_violation"
    assert label_code("TransientError") == "TransientError"
    assert label_code("duplicate") == "duplicate"
    assert label_code("got 'x' where a number was due") == OTHER  # no code: the text is a value
    assert label_code("x" * 100) == OTHER
