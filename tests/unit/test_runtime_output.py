"""BatchSender logic without a broker: partitioning and producer renewal."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import murmur2

from stream_orch.runtime.output import BatchSender, PartitionMap


class FakeProducer:
    """Stands in for AIOKafkaProducer where only start/stop matter."""

    def __init__(self, fail_start: bool = False) -> None:
        self.fail_start = fail_start
        self.started = self.stopped = False

    async def start(self) -> None:
        if self.fail_start:
            raise ConnectionError("Unable to bootstrap")
        self.started = True

    async def stop(self) -> None:
        self.stopped = True


def test_partition_map_is_kafkas_murmur2_and_round_robin_for_null_keys() -> None:
    pm = PartitionMap({"t": 6})
    assert pm.of("t", b"acct-1") == (murmur2(b"acct-1") & 0x7FFFFFFF) % 6
    assert {pm.of("t", None) for _ in range(6)} == set(range(6))


async def test_renew_swaps_in_a_new_producer_and_stops_the_one_it_made_before() -> None:
    made: list[FakeProducer] = []

    def factory() -> FakeProducer:
        made.append(FakeProducer())
        return made[-1]

    shared = FakeProducer()
    sender = BatchSender(shared, PartitionMap({"t": 1}), renew=factory)  # type: ignore[arg-type]
    await sender.renew()
    await sender.renew()
    assert sender._producer is made[1] and made[1].started
    assert made[0].stopped, "the first renewed producer is stopped when replaced"
    assert not shared.stopped, "a producer the sender did not make is never stopped by it"


async def test_a_renewal_that_cannot_start_is_stopped_and_leaves_the_old_producer() -> None:
    """While the broker is away the new producer cannot bootstrap: it must not leak (an
    unclosed producer) nor replace the old one, and the caller can simply renew again."""
    refused, fine = FakeProducer(fail_start=True), FakeProducer()
    attempts = [refused, fine]
    old = FakeProducer()
    sender = BatchSender(old, PartitionMap({"t": 1}), renew=lambda: attempts.pop(0))  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        await sender.renew()
    assert refused.stopped
    assert sender._producer is old
    await sender.renew()
    assert sender._producer is fine and fine.started
