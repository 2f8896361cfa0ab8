"""Issue 14: defects found by reading the runtime, each shown by a fault put into real parts
(the real broker; the worker's pieces in this process so a test can reach them)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from kafka_helpers import create_topic, unique_name

from stream_orch.codecs import SchemaRegistry
from stream_orch.observability.health import HealthState
from stream_orch.observability.metrics import Metrics
from stream_orch.runtime import delivery, transactions
from stream_orch.runtime.worker import Worker
from stream_orch.settings import Settings
from stream_orch.state.global_table import GlobalTable
from stream_orch.state.restore import Restorer
from stream_orch.topology.loader import load_topology
from tests import reliability_harness as rh
from tests import topology_harness as th
from tests.topology_harness import BOOTSTRAP

pytestmark = pytest.mark.integration


async def _until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


def _sample(metrics: Metrics, name: str, table: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"table": table})


async def test_a_global_table_follower_that_fails_restarts_and_is_reported_while_stale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Defect 7: any error in the follower's consumer ended its task and the table went stale
    with no metric, log or health signal. Now it restarts with backoff where it stopped, and
    its lag, last-applied time and restarts are exported; /health fails while it is stale."""
    topic = unique_name("profiles")
    await create_topic(BOOTSTRAP, topic, partitions=2)
    row = lambda i: (f"c{i}".encode(), orjson.dumps({"customer_id": f"c{i}", "n": i}))  # noqa: E731
    await rh.produce_bulk(topic, [row(i) for i in range(3)])
    table = GlobalTable(
        "profiles", topic, 2, Settings(bootstrap_servers=BOOTSTRAP).kafka_client_args(), orjson.loads
    )
    health, metrics = HealthState(), Metrics()
    await table.start()
    try:
        health.watch_feed("global table profiles", table.fresh_at, stale_seconds=1.5)
        metrics.watch_global_tables([table])
        assert len(table) == 3 and health.liveness()[0]

        broken = True
        real_getmany = AIOKafkaConsumer.getmany

        async def getmany(self, *args, **kwargs):  # the broker connection drops, for a while
            if broken:
                await asyncio.sleep(0.05)
                raise KafkaConnectionError("injected: connection to the broker lost")
            return await real_getmany(self, *args, **kwargs)

        monkeypatch.setattr(AIOKafkaConsumer, "getmany", getmany)
        await rh.produce_bulk(topic, [row(i) for i in range(3, 6)])
        assert await _until(lambda: not health.liveness()[0], timeout=10), "a stale table passed /health"
        body = health.liveness()[1]
        assert "global table profiles" in body["stale"] and "stale" in body["reasons"][0]
        assert table.restarts >= 1, "the follower was not restarted"
        assert _sample(metrics, "stream_orch_global_table_follower_restarts_total", "profiles") >= 1
        assert table.get("c4", 0) is None

        broken = False  # the broker is back: the follower resumes where it stopped
        assert await _until(lambda: table.get("c5", 0) is not None, timeout=40), (
            "the follower never came back"
        )
        assert await _until(lambda: health.liveness()[0], timeout=5), health.liveness()[1]
        assert len(table) == 6 and table.get("c4", 0) == {"customer_id": "c4", "n": 4}
        assert _sample(metrics, "stream_orch_global_table_lag_records", "profiles") == 0
        applied = _sample(metrics, "stream_orch_global_table_last_applied_timestamp_seconds", "profiles")
        assert applied is not None and time.time() - applied < 60
        restarts = table.restarts
        rh.record_result(
            "a global table's follower fails for a while: restarted, stale reported, nothing lost",
            events_in=6,
            lost=6 - len(table),
            duplicated_outputs=0,
            follower_restarts=restarts,
        )
    finally:
        await table.stop()


# ---------------------------------------------------------------------------- the fraud node


def _settings(tmp_path: Path, name: str) -> Settings:
    return Settings(
        bootstrap_servers=BOOTSTRAP, state_dir=tmp_path / name, static_membership=False, metrics_port=0
    )


class _Fraud:
    """An isolated copy of the fraud topology, its crafted input and reference velocities."""

    def __init__(self, tmp_path: Path, processing: str, accounts: int = 150, per_account: int = 16) -> None:
        self.tmp_path = tmp_path
        self.path, self.t, self.group = rh.fraud_copy(tmp_path, processing=processing)
        self.spec = load_topology(self.path).spec
        self.schemas = SchemaRegistry(th.REPO / "schemas")
        self.profiles, self.txns, self.expected = rh.crafted(accounts, per_account)
        self.enriched, self.dlq = self.t["transactions.enriched"], self.t["transactions.dlq"]
        self.coords: list[tuple[int, int]] = []

    def worker(self, name: str) -> Worker:
        return Worker(self.spec, _settings(self.tmp_path, name), self.schemas)

    async def feed(self, txns: list) -> None:
        self.coords += await rh.produce_bulk(self.t["transactions"], txns)

    async def feed_paced(self, txns: list, rate: int) -> None:
        coords = await rh.produce_paced(self.t["transactions"], txns, rate)
        assert None not in coords, "the broker refused a record"
        self.coords += coords  # type: ignore[arg-type]

    async def profiles_in(self) -> None:
        await rh.produce_bulk(self.t["customers"], self.profiles)
        await asyncio.sleep(2)

    async def outcome(self, timeout: float = 120) -> tuple[rh.Accounting, list]:
        """Every input accounted for (or the timeout); (accounting, wrong velocities)."""
        inputs = [(c, v) for c, (_k, v) in zip(self.coords, self.txns, strict=False)]
        async with rh.Watcher([self.enriched, self.dlq]) as watch:
            acc = await rh.wait_accounted(watch, inputs, self.enriched, self.dlq, timeout=timeout)
            _per_id, wrong = rh.wrong_velocities(watch.records[self.enriched], self.expected)
        return acc, wrong


@pytest.mark.parametrize("processing", rh.GUARANTEES)
async def test_a_restore_that_fails_half_way_starts_the_node_over_before_any_batch(
    tmp_path: Path, processing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 1: restores ran in on_partitions_assigned, where aiokafka logs and drops what they
    raise: a restore that failed half-way left partitions claimed and half restored, and the
    node processed on partial state. Now the node takes partitions over in its loop, and a
    failed restore starts it over; no batch runs before its tables are whole."""
    fraud = _Fraud(tmp_path, processing)
    half = len(fraud.txns) // 2
    first = fraud.worker("first")
    await first.start()
    try:
        await th.wait_for_group(fraud.group)
        await fraud.profiles_in()
        await fraud.feed(fraud.txns[:half])
        acc, _ = await fraud.outcome(timeout=90)
        assert acc.lost == []
    finally:
        await first.shutdown()

    real_restore = Restorer.restore
    calls: list[tuple[str, bool, int]] = []
    second = fraud.worker("second")  # no local state: every table restores from its changelog

    async def half_then_fail(self, tables, partitions, **kwargs):
        runner = second.runners.get("score_transactions")
        if runner is not None:
            calls.append((tables[0].name, runner.ready, runner.processed))
        if len(calls) == 1:
            await real_restore(self, tables[:1], partitions[:1], **kwargs)
            raise RuntimeError("injected: the changelog read failed half-way")
        return await real_restore(self, tables, partitions, **kwargs)

    monkeypatch.setattr(Restorer, "restore", half_then_fail)
    await second.start()
    try:
        node = second.runners["score_transactions"]
        await fraud.feed(fraud.txns[half:])
        acc, wrong = await fraud.outcome()
        rh.record_result(
            f"a table restore fails half-way: the node starts over before any batch ({processing})",
            **acc.figures(),
            node_restarts=node.restarts,
            wrong_velocities=len(wrong),
        )
        assert calls and calls[0][1:] == (False, 0), f"processed before its state was whole: {calls[0]}"
        assert node.restarts >= 1, "the failed restore was not acted on"
        assert acc.lost == [], f"{len(acc.lost)} lost"
        assert wrong == [], f"{len(wrong)} outputs computed on partial state, e.g. {wrong[:3]}"
    finally:
        await second.shutdown()


@pytest.mark.parametrize("processing", rh.GUARANTEES)
async def test_a_failure_found_by_a_revocation_is_raised_before_the_next_batch_is_committed(
    tmp_path: Path, processing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 2: the loop checked for a failure recorded by a rebalance callback only before its
    fetch. A revocation that ran during the fetch and found the in-flight batch failed (its
    outputs never written) let the next batch run and commit past it: the failed batch lost.
    Here the in-flight batch's outputs are never acknowledged and a revocation settles it while
    the loop fetches; the next batch must not run."""
    fraud = _Fraud(tmp_path, processing)
    worker = fraud.worker("w")
    await worker.start()
    try:
        node = worker.runners["score_transactions"]
        await th.wait_for_group(fraud.group)
        await fraud.profiles_in()
        handed, failed, revoked = [0], [], []

        def faulty(real):
            async def hand_over(producer, pending):
                if any(topic == fraud.enriched for topic, _p in pending):
                    handed[0] += 1
                    if handed[0] == 1:  # the first batch's outputs, never written
                        failed.append(sum(len(r) for r in pending.values()))

                        async def never_acknowledged():
                            raise KafkaTimeoutError("injected: the batch was not acknowledged")

                        return never_acknowledged()
                return await real(producer, pending)

            return hand_over

        monkeypatch.setattr(delivery, "hand_over", faulty(delivery.hand_over))
        monkeypatch.setattr(transactions, "hand_over", faulty(transactions.hand_over))
        consumer = node._consumer
        real_getmany = consumer.getmany

        async def getmany(*args, **kwargs):
            batches = await real_getmany(*args, **kwargs)
            if failed and not revoked:  # a rebalance lands while the loop fetches
                revoked.append(True)
                await node.on_revoked(set())
            return batches

        monkeypatch.setattr(consumer, "getmany", getmany)
        await fraud.feed(fraud.txns)
        acc, wrong = await fraud.outcome()
        rh.record_result(
            f"a revocation finds the in-flight batch failed: nothing committed past it ({processing})",
            **acc.figures(),
            node_restarts=node.restarts,
        )
        assert failed and revoked, "the fault never fired"
        assert node.restarts >= 1  # more only if the broker hiccups meanwhile
        assert acc.lost == [], f"{len(acc.lost)} lost: committed past a failed batch"
        assert wrong == []
    finally:
        await worker.shutdown()


async def test_a_hanging_commit_neither_holds_a_revocation_nor_kills_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defect 3: the revoke callback waited (up to 30 s) for the group commit of the batch
    before, inside the rebalance, and a commit that timed out escaped as an error nobody
    handled. Now a revocation cancels a pending commit (the next owner re-reads those records)
    and a commit that hangs in the loop starts the node over."""
    fraud = _Fraud(tmp_path, "at_least_once")
    worker = fraud.worker("w")
    await worker.start()
    try:
        node = worker.runners["score_transactions"]
        await th.wait_for_group(fraud.group)
        await fraud.profiles_in()
        consumer = node._consumer
        real_commit = consumer.commit
        hang: list[str] = []
        hanging: list[float] = []
        released = asyncio.Event()

        async def commit(*args, **kwargs):
            if hang:
                hanging.append(time.monotonic())
                await released.wait()  # the coordinator never answers
            return await real_commit(*args, **kwargs)

        monkeypatch.setattr(consumer, "commit", commit)
        third = len(fraud.txns) // 3
        await fraud.feed(fraud.txns[:third])
        acc, _ = await fraud.outcome(timeout=60)
        assert acc.lost == []

        hang.append("revocation")
        # a live source: the next batch arrives while the commit hangs, and waits for it
        feeding = asyncio.create_task(fraud.feed_paced(fraud.txns[third : 2 * third], rate=200))
        assert await _until(lambda: bool(hanging), timeout=20), "no commit was made to hang"
        await asyncio.sleep(1.0)
        started = time.monotonic()
        await asyncio.wait_for(node.on_revoked(set()), delivery.COMMIT_TIMEOUT_S / 2)
        revoke_s = time.monotonic() - started
        await feeding

        monkeypatch.setattr(delivery, "COMMIT_TIMEOUT_S", 2.0)  # a hang in the loop: started over
        await fraud.feed(fraud.txns[2 * third :])
        assert await _until(lambda: node.restarts >= 1, timeout=60), "a hanging commit was never noticed"
        hang.clear()
        released.set()
        acc, wrong = await fraud.outcome()
        task = worker._tasks["score_transactions"]
        rh.record_result(
            "a group commit hangs: the revocation does not wait, the node starts over",
            **acc.figures(),
            node_restarts=node.restarts,
            revoke_s=round(revoke_s, 2),
        )
        assert not task.done(), "the node died of a commit timeout"
        assert acc.lost == [], f"{len(acc.lost)} lost"
        assert wrong == []
    finally:
        released.set()
        await worker.shutdown()
