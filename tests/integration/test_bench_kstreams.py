"""The Kafka Streams contenders (benchmarks/contenders/kstreams/) compute what ours compute.

Each app runs once against the real broker on small generated data. forward: one output per
input, each carrying ``forwarded: true``. fraud: per output topic (enriched, alerts, actions,
review, approved, DLQ) the count a reference computes from the input with the rules of
benchmarks/fraud_logic.py (dedupe, velocity per account, score, route). window and join: the
checks of benchmarks/streams_check.py (every window with its count once; every payment's outcome
equal to the generator's ground truth). Skipped when java or mvn is missing or the build fails;
the jar is built once for the whole module.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks import env
from benchmarks import fraud_logic as fl
from benchmarks.contenders import BY_NAME, kstreams
from benchmarks.data import make_dataset, produce_records
from benchmarks.kafka import PARTITIONS, OffsetWatcher, create_topics, sweep_topics
from benchmarks.measure import Context, RunTopics, _check_alive, _start
from benchmarks.streams_check import check

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    reason = kstreams.build()
    if reason:
        pytest.skip(reason)


def fraud_reference(customers: list[dict[str, Any]], transactions: list[dict[str, Any]]) -> Counter[str]:
    """Records per output variable, from the input alone (the rules applied in input order)."""
    out: Counter[str] = Counter()
    seen: dict[str, int] = {}
    windows: dict[str, list[int]] = {}
    profiles = {c["customer_id"]: fl.harmonise_customer(c) for c in customers}
    for raw in transactions:
        try:
            txn = fl.harmonise(raw)
        except fl.Invalid:
            out[env.DLQ] += 1
            continue
        last = seen.get(txn["txn_id"])
        if last is not None and abs(txn["ts"] - last) < fl.DEDUPE_HORIZON_MS:
            continue
        seen[txn["txn_id"]] = txn["ts"]
        windows[txn["account_id"]], txn["velocity_60s"] = fl.velocity(
            windows.get(txn["account_id"], []), txn["ts"]
        )
        scored = fl.score(txn, profiles[txn["customer_id"]])
        out[env.ENRICHED] += 1
        route = fl.route(scored)
        if route == "alert":
            out[env.ALERTS] += 1
            out[env.ACTIONS] += 1
        else:
            out[env.REVIEW if route == "review" else env.APPROVED] += 1
    return out


async def read_committed(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every committed record of ``topic``: read until each partition's position reaches its end
    (an exactly-once writer's transaction markers take offsets, so offsets do not count records)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while any([await consumer.position(tp) < ends[tp] for tp in tps]) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                out += [orjson.loads(r.value) for r in records]
        return out
    finally:
        await consumer.stop()


async def run_app(bootstrap: str, name: str, records: int) -> tuple[dict[str, list[dict]], Counter[str]]:
    """Run contender ``name`` over a fresh fraud data set; its outputs per variable and the reference."""
    data = make_dataset(records, seed=5)
    c = BY_NAME[name]
    run_id = "ks" + uuid.uuid4().hex[:8]
    ctx = Context(bootstrap, run_id, Path(tempfile.mkdtemp(prefix=f"bench-{name}-")))
    prefix = f"bench.{run_id}.{name}"
    topics = RunTopics(prefix, f"{prefix}.in", f"{prefix}.customers")
    procs = []
    try:
        await create_topics(bootstrap, [topics.input, topics.customers, *topics.outputs(c.kind)])
        await produce_records(bootstrap, topics.customers, data.customers, "customer_id")
        await produce_records(bootstrap, topics.input, data.transactions, "account_id")
        expected = records if c.kind == "forward" else data.expected_enriched + data.expected_invalid
        procs = _start(ctx, c, topics, prefix, 1)
        started = time.monotonic()
        async with OffsetWatcher(bootstrap, topics.counted(c.kind)) as watcher:
            while await watcher.count() < expected and time.monotonic() - started < 60:
                _check_alive(procs)
                await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # anything written beyond the expected number shows up too
        names = (
            [env.OUTPUT]
            if c.kind == "forward"
            else [env.ENRICHED, env.ALERTS, env.ACTIONS, env.REVIEW, env.APPROVED, env.DLQ]
        )
        outputs = {v: await read_committed(bootstrap, topics.out[v]) for v in names}
        reference = (
            Counter({env.OUTPUT: records})
            if c.kind == "forward"
            else fraud_reference(data.customers, data.transactions)
        )
        return outputs, reference
    finally:
        for p in procs:
            p.stop()
        await sweep_topics(bootstrap, run_id)


@pytest.mark.timeout(120)
async def test_kstreams_forward_writes_each_record_once_with_the_field(kafka_bootstrap: str) -> None:
    outputs, reference = await run_app(kafka_bootstrap, "kstreams_forward", 5_000)
    out = outputs[env.OUTPUT]
    assert len(out) == reference[env.OUTPUT]
    assert len({o["txn_id"] for o in out}) == len(out) and all(o["forwarded"] is True for o in out)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["kstreams_fraud", "kstreams_fraud_eos"])
async def test_kstreams_fraud_outputs_equal_the_reference(kafka_bootstrap: str, name: str) -> None:
    outputs, reference = await run_app(kafka_bootstrap, name, 20_000)
    assert {v: len(r) for v, r in outputs.items()} == {v: reference[v] for v in outputs}
    assert all("amount_eur" in r and "score" in r for r in outputs[env.ENRICHED])


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "name",
    [
        "kstreams_window",
        # on the check's data Kafka Streams' left join reports about a third of the payments
        # without a settlement (the rest are never emitted); benchmarks/README.md, "Kafka Streams"
        pytest.param(
            "kstreams_join",
            # not asserted in the suite: whether Kafka Streams' left join reports every unmatched
            # payment depends on its wall-clock emit timing; measured: all 83 on a quiet machine
            # (2026-12-04 13:20), 31 of 83 under load (benchmarks/README.md, "Kafka Streams contenders")
            marks=pytest.mark.skip(reason="KS left join: unmatched payments all reported only when quiet"),
        ),
    ],
)
async def test_kstreams_window_and_join_equal_the_reference(kafka_bootstrap: str, name: str) -> None:
    diff = await check(kafka_bootstrap, name, settle_s=2.0)
    assert diff["ok"], diff
    assert diff["outputs"] == diff.get("windows", diff.get("payments")), diff
