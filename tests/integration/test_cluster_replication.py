"""A local 3-broker cluster (``kafka up --brokers 3``): topics the engine creates are replicated
three ways with min.insync.replicas 2, the fraud topology loses nothing when the broker leading
most of its partitions is killed -9 mid-stream and comes back, and ``down`` stops every node.
Runs with ``make test-cluster`` (see tests/cluster_harness.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_orch.runtime.admin import TopicPlan, ensure_topics
from stream_orch.settings import Settings
from stream_orch.transport.topics import ensure_compacted_topic
from tests import cluster_harness as ch
from tests import reliability_harness as rh
from tests import topology_harness as th
from tests.topology_harness import wait_for_group

pytestmark = ch.MARKS

DOWN_S = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ch.OwnCluster]:
    own = ch.OwnCluster(tmp_path_factory.mktemp("cluster") / "state")
    own.up()
    try:
        yield own
    finally:
        own.cli("down", check=False)


@pytest.fixture
def on_cluster(cluster: ch.OwnCluster, monkeypatch: pytest.MonkeyPatch) -> ch.OwnCluster:
    monkeypatch.setattr(th, "BOOTSTRAP", cluster.bootstrap)  # produce, watch and group checks
    return cluster


async def test_engine_topics_follow_the_cluster_default(on_cluster: ch.OwnCluster) -> None:
    suffix = f"{time.time_ns()}"
    planned, ledger = f"cluster-plan-{suffix}", f"cluster-ledger-{suffix}"
    try:
        await ensure_topics(
            {"bootstrap_servers": on_cluster.bootstrap}, [TopicPlan(planned, 3, compact=True)]
        )
        await ensure_compacted_topic(Settings(bootstrap_servers=on_cluster.bootstrap), ledger)
        for topic, partitions in ((planned, 3), (ledger, 1)):
            replicas, min_isr = await ch.replication_of(on_cluster.bootstrap, topic)
            assert replicas == [3] * partitions, (topic, replicas)
            assert min_isr == "2", (topic, min_isr)
    finally:
        await rh.delete_topics([planned, ledger], server=on_cluster.bootstrap)


async def _load_profiles(t: dict[str, str], profiles: list, server: str) -> None:
    """Profiles in, and wait until every one is committed to ``customers.clean`` (which feeds the
    global table): a transaction enriched before its profile arrived would wait in a retry topic
    and count late in its account's velocity, whatever the brokers do."""
    await rh.produce_bulk(t["customers"], profiles, server=server)
    clean = t["customers.clean"]
    async with rh.Watcher([clean], server=server) as watch:
        assert await watch.wait(lambda x: x.count(clean) >= len(profiles), timeout=90)
    await asyncio.sleep(2)  # customers.clean -> the global table


@pytest.mark.parametrize("processing", rh.GUARANTEES)
async def test_leader_killed_mid_stream_and_back(
    tmp_path: Path, on_cluster: ch.OwnCluster, processing: str
) -> None:
    server = on_cluster.bootstrap
    path, t, group = rh.fraud_copy(tmp_path, server=server, processing=processing)
    w = rh.worker(path, tmp_path / "worker.log", server=server, metrics_port=th.free_port())
    profiles, txns, expected = rh.crafted(400, 50)  # 20,000 transactions plus 400 repeats
    enriched, dlq = t["transactions.enriched"], t["transactions.dlq"]
    try:
        w.start()
        await wait_for_group(group)
        await _load_profiles(t, profiles, server)
        # the engine's own topics (changelogs, retry, DLQ) were created with the cluster's default
        for topic in (dlq, enriched):
            replicas, min_isr = await ch.replication_of(server, topic)
            assert set(replicas) == {3} and min_isr == "2", (topic, replicas, min_isr)
        producing = asyncio.create_task(rh.produce_paced(t["transactions"], txns, rate=2000, server=server))
        async with rh.Watcher([enriched, dlq], server=server) as watch:
            assert await watch.wait(lambda x: x.count(enriched) >= 2000, timeout=60), w.log()
        assert not producing.done(), "the input was all produced before the kill: not mid-stream"
        led = await ch.leaders(server, [t["transactions"], enriched])
        victim = led.most_common(1)[0][0]
        on_cluster.kill9(victim)
        killed_at = time.monotonic()
        await asyncio.sleep(DOWN_S)
        assert w.proc.poll() is None, "the worker died with a broker\n" + w.log()
        up_s = await asyncio.to_thread(on_cluster.up, victim)
        back_at = time.monotonic()
        coords = await producing
        inputs = [(c, v) for c, (_k, v) in zip(coords, txns, strict=True) if c is not None]
        topics = [t["transactions"], *(t[name] for name in rh.FRAUD_OUTPUTS)]
        async with rh.Watcher(topics, server=server) as watch:
            acc = await rh.wait_accounted(watch, inputs, enriched, dlq, timeout=180)
            landed = rh.velocities_as_landed(watch.records[t["transactions"]])
            found = rh.verdict(_outputs(watch.records, t), enriched, landed)
        reordered = sorted(tid for tid, n in landed.items() if n != expected[tid])
        rh.record_result(
            f"cluster of 3: partition leader killed -9 mid-stream ({processing})",
            **acc.figures(),
            **found.figures(),
            not_acknowledged_by_broker=len(txns) - len(inputs),
            killed_broker_led_partitions=led[victim],
            input_reordered_velocities=len(reordered),
            broker_away_s=round(back_at - killed_at, 1),
            broker_restart_s=round(up_s, 1),
            worker_survived=w.proc.poll() is None,
        )
        assert len(inputs) == len(txns), "acks=all with one broker of three away: every send succeeds"
        if processing == "exactly_once":
            found.assert_exactly_once(acc, landed, w.log())
        else:  # re-emission after a retried batch: bounded by what was in flight
            assert acc.lost == [], f"{len(acc.lost)} lost\n{w.log()}"
            assert acc.duplicated <= 2000, acc.figures()
        assert w.terminate() == 0
    finally:
        w.stop()
        await rh.delete_topics(list(t.values()), server=server)


def _outputs(records: dict[str, list], t: dict[str, str]) -> dict[str, list]:
    """The watched records of the fraud topology's outputs (not its input)."""
    names = {t[name] for name in rh.FRAUD_OUTPUTS}
    return {topic: rs for topic, rs in records.items() if topic in names}


async def _acked_within(server: str, topic: str, timeout_ms: int) -> bool:
    """Whether one acks=all record is acknowledged within ``timeout_ms``."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    producer = AIOKafkaProducer(bootstrap_servers=server, acks="all", request_timeout_ms=timeout_ms)
    await producer.start()
    try:
        await asyncio.wait_for(producer.send_and_wait(topic, b"probe", key=b"probe"), timeout_ms / 1000 + 2)
        return True
    except (KafkaError, TimeoutError):
        return False
    finally:
        await producer.stop()


async def test_two_of_three_stopped_blocks_producers_and_resumes(
    tmp_path: Path, on_cluster: ch.OwnCluster
) -> None:
    server = on_cluster.bootstrap
    path, t, group = rh.fraud_copy(tmp_path, server=server, processing="exactly_once")
    w = rh.worker(path, tmp_path / "worker.log", server=server, metrics_port=th.free_port())
    profiles, txns, expected = rh.crafted(400, 50)  # 20,000 transactions plus 400 repeats
    enriched, dlq = t["transactions.enriched"], t["transactions.dlq"]
    probe_topic = f"cluster-probe-{time.time_ns()}"
    try:
        w.start()
        await wait_for_group(group)
        await _load_profiles(t, profiles, server)
        await rh.produce_bulk(probe_topic, [(b"k", b"v")], server=server)
        producing = asyncio.create_task(rh.produce_paced(t["transactions"], txns, rate=2000, server=server))
        async with rh.Watcher([enriched, dlq], server=server) as watch:
            assert await watch.wait(lambda x: x.count(enriched) >= 1000, timeout=60), w.log()
        assert not producing.done(), "the input was all produced before the outage: not mid-stream"
        on_cluster.kill9(2)
        on_cluster.kill9(3)
        stopped_at = time.monotonic()
        # one broker of three: fewer in sync than min.insync.replicas=2, so acks=all is refused
        acked_while_down = await _acked_within(on_cluster.bootstrap, probe_topic, 5000)
        await asyncio.sleep(DOWN_S)
        assert w.proc.poll() is None, "the worker died with two brokers\n" + w.log()
        starting_ms = time.time() * 1000
        up_s = await asyncio.to_thread(on_cluster.up, 2)
        back_at = time.monotonic()
        coords = await producing
        inputs = [(c, v) for c, (_k, v) in zip(coords, txns, strict=True) if c is not None]
        topics = [t["transactions"], *(t[name] for name in rh.FRAUD_OUTPUTS)]
        async with rh.Watcher(topics, server=server) as watch:
            acc = await rh.wait_accounted(watch, inputs, enriched, dlq, timeout=180)
            # against the input as it landed: a run on 2026-12-04 found 1,030 velocities below the
            # reference from the order sent, not seen again in three runs; this tells the producer's
            # reordering (input_reordered_velocities) from a fault of ours
            landed = rh.velocities_as_landed(watch.records[t["transactions"]])
            found = rh.verdict(_outputs(watch.records, t), enriched, landed)
            after = rh.processed_after(watch.records[enriched], starting_ms)
        reordered = sorted(tid for tid, n in landed.items() if n != expected[tid])
        await asyncio.to_thread(on_cluster.up, 3)
        rh.record_result(
            "cluster of 3: two brokers killed -9 mid-stream, one back (exactly_once)",
            **acc.figures(),
            **found.figures(),
            not_acknowledged_by_broker=len(txns) - len(inputs),
            acks_all_accepted_with_one_broker=acked_while_down,
            brokers_away_s=round(back_at - stopped_at, 1),
            broker_restart_s=round(up_s, 1),
            first_output_after_restart_s=round((min(after) - starting_ms) / 1000, 1) if after else None,
            input_reordered_velocities=len(reordered),
        )
        assert not acked_while_down, "an acks=all write was acknowledged by one broker of three"
        assert after, "the worker did not resume when a broker came back\n" + w.log()
        found.assert_exactly_once(acc, landed, w.log())
        assert w.terminate() == 0
    finally:
        w.stop()
        await rh.delete_topics([*t.values(), probe_topic], server=server)


def test_status_and_down_act_on_every_node(cluster: ch.OwnCluster) -> None:
    status = cluster.cli("status").stdout
    assert status.count("running, PID") == ch.BROKERS, status
    cluster.down(2)
    assert cluster.pid(2) is None and cluster.pid(1) is not None
    assert cluster.cli("status", check=False).returncode == 3
    cluster.down()
    assert [cluster.pid(n) for n in range(1, ch.BROKERS + 1)] == [None] * ch.BROKERS
    stopped = cluster.cli("status", check=False)
    assert stopped.returncode == 3 and stopped.stdout.count("stopped") == ch.BROKERS, stopped.stdout
