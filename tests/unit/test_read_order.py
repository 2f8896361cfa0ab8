"""A join's input and joined topic are read in event-time order per partition, one side at most
``lead_ms`` ahead of the other while the other still has records on the broker (issue 25): the
decision (runtime/readorder.py) and its place in the fetch path (runtime/prefetch.py). Liveness:
a side read to its end, empty or silent never holds the other back, and one whose records do not
come holds it for ``idle_s`` at most; a take-over forgets what is held; nothing is committed past
a held record."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from aiokafka import TopicPartition

from stream_orch.observability.read_order_metrics import ReadOrderCollector
from stream_orch.runtime.prefetch import Prefetch
from stream_orch.runtime.readorder import HOLD_CAP_S, ReadOrder, groups_of, order_for

PAY = TopicPartition("payments", 0)
SET = TopicPartition("settlements", 0)
PAY1 = TopicPartition("payments", 1)
SET1 = TopicPartition("settlements", 1)
RETRY = TopicPartition("payments.retry.1", 0)


@dataclass
class R:
    offset: int
    timestamp: int


def _records(tp_start: int, *timestamps: int) -> list[R]:
    return [R(tp_start + i, ts) for i, ts in enumerate(timestamps)]


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _order(lead_ms: int = 1000, idle_s: float = 1.0, clock: _Clock | None = None) -> ReadOrder:
    return ReadOrder("payments", ["settlements"], lead_ms=lead_ms, idle_s=idle_s, clock=clock or _Clock())


def _offsets(batches: dict[TopicPartition, list[R]]) -> dict[TopicPartition, list[int]]:
    return {tp: [r.offset for r in records] for tp, records in batches.items() if records}


def test_the_side_ahead_waits_for_the_other_within_the_lead() -> None:
    order = _order(lead_ms=1000)
    rest = order.add({PAY: _records(0, 1000, 2000, 3000, 60_000, 61_000), SET: _records(0, 500, 1500)}, {0})
    assert rest == {}
    out = order.release({0}, lambda tp: True)  # both have more on the broker
    # settlements' newest is 1500: payments up to 2500 go, the rest waits (and is not fetched)
    assert _offsets(out) == {PAY: [0, 1], SET: [0, 1]}
    assert order.held() == {PAY}
    assert order.first_held(PAY) == 2
    # settlements catch up to 60,500: payments up to 61,500 go
    order.add({SET: _records(2, 30_000, 60_500)}, {0})
    out = order.release({0}, lambda tp: True)
    assert _offsets(out) == {PAY: [2, 3, 4], SET: [2, 3]}
    assert order.held() == set()
    # what went to the batches never had payments more than the lead ahead (fetched: 59.5 s)
    assert order.lead_max_s == {"payments": 0.5, "settlements": 0.0}
    assert order.leads() == {("settlements", 0): 0.5}


def test_a_side_read_to_its_end_holds_nothing_back() -> None:
    order = _order(lead_ms=1000)
    order.add({PAY: _records(0, 1000, 90_000), SET: _records(0, 500)}, {0})
    out = order.release({0}, lambda tp: tp != SET)  # settlements: nothing more on the broker
    assert _offsets(out) == {PAY: [0, 1], SET: [0]}
    # an empty side (never fetched, nothing on the broker) holds nothing back either
    order = _order(lead_ms=1000)
    order.add({PAY: _records(0, 1000, 90_000)}, {0})
    assert _offsets(order.release({0}, lambda tp: tp != SET)) == {PAY: [0, 1]}


def test_a_side_with_records_that_do_not_come_holds_the_other_for_the_idle_bound_only() -> None:
    clock = _Clock()
    order = _order(lead_ms=1000, idle_s=2.0, clock=clock)
    order.add({PAY: _records(0, 1000, 90_000)}, {0})
    # settlements never fetched yet but behind: payments wait, not even the first one goes
    assert order.release({0}, lambda tp: True) == {}
    assert not order.handed_over(0)  # the node has nothing to process from now on
    clock.now += 1.9
    assert order.release({0}, lambda tp: True) == {}
    assert not order.handed_over(0)
    clock.now += 0.2
    assert order.handed_over(0)  # idle for 2 s: the caller releases again
    assert _offsets(order.release({0}, lambda tp: True)) == {PAY: [0, 1]}
    # idling goes on until settlements deliver: payments are read as fetched meanwhile
    order.add({PAY: _records(2, 200_000)}, {0})
    assert _offsets(order.release({0}, lambda tp: True)) == {PAY: [2]}
    # settlements deliver: the order holds again
    order.add({SET: _records(0, 100_000), PAY: _records(3, 300_000)}, {0})
    assert _offsets(order.release({0}, lambda tp: True)) == {SET: [0]}
    assert order.held() == {PAY}


def test_time_spent_processing_other_partitions_is_not_idle_but_the_wait_is_capped() -> None:
    clock = _Clock()
    order = _order(lead_ms=1000, idle_s=1.0, clock=clock)
    order.add({PAY: _records(0, 90_000)}, {0})
    assert order.release({0}, lambda tp: True) == {}
    for _ in range(10):  # other partitions keep the node busy: their side is on its way
        clock.now += 2.0
        assert not order.handed_over(500)
        assert order.release({0}, lambda tp: True) == {}
    clock.now += HOLD_CAP_S
    assert _offsets(order.release({0}, lambda tp: True)) == {PAY: [0]}


def test_partitions_without_both_sides_and_other_topics_pass_as_fetched() -> None:
    order = _order(lead_ms=0)
    fetched = {PAY1: _records(0, 9_000), RETRY: _records(0, 1), PAY: _records(0, 5_000)}
    rest = order.add(fetched, {0})  # partition 1's settlements are another worker's
    assert _offsets(rest) == {PAY1: [0], RETRY: [0]}
    assert order.held() == {PAY}
    assert groups_of(order, [PAY, SET, PAY1, RETRY]) == {0}


def test_out_of_order_records_stop_the_release_at_the_first_past_the_bound() -> None:
    order = _order(lead_ms=0)
    order.add({PAY: _records(0, 100, 900, 200), SET: _records(0, 300)}, {0})
    out = order.release({0}, lambda tp: True)
    assert _offsets(out) == {PAY: [0], SET: [0]}  # offset order kept: 200 waits behind 900


def test_clear_forgets_what_is_held_and_seen() -> None:
    clock = _Clock()
    order = _order(clock=clock)
    order.add({PAY: _records(0, 90_000), SET: _records(0, 1)}, {0})
    order.release({0}, lambda tp: True)
    clock.now += 3
    order.clear()
    assert order.held() == set() and order.first_held(PAY) is None and order.leads() == {}
    assert order.held_s["payments"] == 3.0


def test_an_interval_join_s_topic_is_read_ahead_by_its_window() -> None:
    from stream_orch.topology.loader import load_topology

    spec = load_topology(Path(__file__).parents[2] / "topologies" / "reconciliation.yaml").spec
    node = spec.nodes["reconcile"]
    order = order_for(node, (5000, 1.0))
    assert order is not None and order.topics == {"payments", "settlements"}
    assert order.ahead_ms == {"payments": 0, "settlements": 31 * 60_000}  # after 30m + grace 1m
    assert order_for(node, None) is None  # join_read_order off
    no_join = node.model_copy(update={"steps": []})
    assert order_for(no_join, (5000, 1.0)) is None
    # settlements go up to 31 min (+ the lead) past the payments, payments up to the lead past
    # the settlements less 31 min
    m = 60_000
    order = ReadOrder("payments", ["settlements"], ahead_ms={"settlements": 31 * m}, lead_ms=1000, idle_s=1)
    order.add({PAY: _records(0, 0, 10 * m), SET: _records(0, 5 * m, 31 * m, 40 * m)}, {0})
    out = order.release({0}, lambda tp: True)
    # settlements' newest less 31 min is 9 min: payments wait past 9 min + 1 s
    assert _offsets(out) == {PAY: [0], SET: [0, 1, 2]}
    assert order.held() == {PAY}
    assert order.leads() == {("settlements", 0): -40 * 60.0}


def test_metrics_carry_topics_and_partitions_not_records() -> None:
    order = _order(lead_ms=0)
    order.add({PAY: _records(0, 10_000), SET: _records(0, 4_000)}, {0})
    order.release({0}, lambda tp: tp != SET)  # settlements read to their end
    collector = ReadOrderCollector()
    collector.nodes["reconcile"] = order
    samples = {
        (s.name.removeprefix("stream_orch_join_read_"), *sorted(s.labels.values())): s.value
        for f in collector.collect()
        for s in f.samples
    }
    assert samples[("lead_seconds", "0", "reconcile", "settlements")] == 6.0
    assert samples[("lead_max_seconds", "payments", "reconcile")] == 6.0
    assert ("held_seconds_total", "payments", "reconcile") in samples


# ---------------------------------------------------------------------- in the fetch path


class _Consumer:
    """getmany over buffered records, honouring the partitions asked for; positions, high
    watermarks and last stable offsets as aiokafka reports them."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.buffer: dict[TopicPartition, list[R]] = {}
        self.end: dict[TopicPartition, int] = {}  # last stable offset
        self.pos: dict[TopicPartition, int] = {}
        self.asked: list[tuple[TopicPartition, ...]] = []
        self.later: list[dict[TopicPartition, list[R]]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return self.end.get(tp)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.end.get(tp)

    async def position(self, tp: TopicPartition) -> int:
        return self.pos.get(tp, 0)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[R]]:
        self.asked.append(partitions)
        if not self.buffer and self.later:  # the next response, buffered by now
            self.buffer = self.later.pop(0)
        out = {}
        for tp in list(self.buffer):
            if partitions and tp not in partitions:
                continue
            records = self.buffer.pop(tp)
            out[tp] = records
            self.pos[tp] = records[-1].offset + 1
        if not out and timeout_ms:
            await asyncio.sleep(0)
        return out


async def test_the_fetch_path_holds_the_side_ahead_and_leaves_it_out_of_the_fetches() -> None:
    consumer = _Consumer({PAY, SET, RETRY})
    order = _order(lead_ms=1000)
    prefetch = Prefetch(consumer, 100, order)  # type: ignore[arg-type]
    consumer.end = {PAY: 100, SET: 100, RETRY: 1}
    consumer.buffer = {PAY: _records(0, 1000, 50_000), SET: _records(0, 2000), RETRY: _records(0, 7)}
    batch = await prefetch.fetch()
    assert _offsets(batch) == {PAY: [0], SET: [0], RETRY: [0]}
    # payments hold a record: the next fetch asks for the others only
    consumer.buffer = {SET: _records(1, 49_500)}
    asked = len(consumer.asked)
    batch = await prefetch.fetch()
    assert set(consumer.asked[asked]) == {SET, RETRY}
    assert _offsets(batch) == {PAY: [1], SET: [1]}
    # an idle commit does not pass the held record; then settlements are read to their end
    consumer.buffer = {PAY: _records(2, 80_000)}
    batch = await prefetch.fetch()
    assert _offsets(batch) == {}
    assert await prefetch.position(PAY) == 2
    consumer.end[SET] = 2  # nothing more on the broker: payments go
    assert _offsets(await prefetch.fetch()) == {PAY: [2]}
    assert await prefetch.position(PAY) == 3


async def test_a_take_over_forgets_what_the_order_holds() -> None:
    consumer = _Consumer({PAY, SET})
    order = _order(lead_ms=0)
    prefetch = Prefetch(consumer, 100, order)  # type: ignore[arg-type]
    consumer.end = {PAY: 100, SET: 100}
    consumer.buffer = {PAY: _records(0, 5000), SET: _records(0, 10)}
    await prefetch.fetch()
    assert order.held() == {PAY}
    prefetch.clear()  # the partitions are sought back to their committed offsets
    assert order.held() == set()
    assert prefetch._readable() == ()  # every partition is fetched again


async def test_a_batch_is_filled_from_other_partitions_while_one_is_held() -> None:
    consumer = _Consumer({PAY, SET, PAY1, SET1})
    prefetch = Prefetch(consumer, 100, _order(lead_ms=0))  # type: ignore[arg-type]
    consumer.end = {PAY: 100, SET: 100, PAY1: 100, SET1: 100}
    consumer.buffer = {PAY: _records(0, 5000, 6000)}
    consumer.later = [{SET: _records(0, 5500)}, {PAY1: _records(0, 10)}, {SET1: _records(0, 20)}]
    batch = await prefetch.fetch()
    # one fetch call: payments held, then settlements, partition 1's pair, until nothing is buffered
    # (partition 1's settlement at 20 waits for payments past 10)
    assert _offsets(batch) == {PAY: [0], SET: [0], PAY1: [0]}
    assert prefetch._order.held() == {PAY, SET1}  # type: ignore[union-attr]


async def test_a_node_without_a_join_asks_for_every_partition() -> None:
    consumer = _Consumer({PAY})
    prefetch = Prefetch(consumer, 100)  # type: ignore[arg-type]
    consumer.buffer = {PAY: _records(0, 1, 2)}
    assert _offsets(await prefetch.fetch()) == {PAY: [0, 1]}
    assert consumer.asked == [()]
