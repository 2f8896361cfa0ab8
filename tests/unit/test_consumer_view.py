"""transport/consumer_view reads aiokafka internals for the SIGUSR1 dump (positions have no public
synchronous getter; the group's coordinator fields are private). These tests break if those
internals change, instead of the dump going quietly empty (it suppresses errors)."""

from __future__ import annotations

import inspect

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer.group_coordinator import BaseCoordinator, GroupCoordinator

from stream_orch.transport.consumer_view import consumer_view

TP = TopicPartition("t", 0)


async def test_the_view_reads_each_assigned_partitions_position_and_the_paused_ones() -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1", enable_auto_commit=False)
    try:
        consumer.assign([TP, TopicPartition("t", 1)])
        consumer._subscription.seek(TP, 5)  # what a started consumer's seek does to the state
        consumer.pause(TP)
        view = consumer_view(consumer)
    finally:
        await consumer.stop()
    # a partition without a position yet is listed with none; an internal that moved would make
    # the dump skip the partition altogether
    assert view["position_highwater"] == {"t[0]": (5, None), "t[1]": (None, None)}
    assert view["paused"] == ["t[0]"]


def test_the_group_coordinator_keeps_the_fields_the_view_reads() -> None:
    """The view reads ``_coordinator`` (set by ``start``) and its coordinator_id, generation and
    member_id, which the coordinator sets in ``__init__``."""
    assert "self._coordinator = GroupCoordinator(" in inspect.getsource(AIOKafkaConsumer.start)
    init = inspect.getsource(GroupCoordinator.__init__) + inspect.getsource(BaseCoordinator.__init__)
    for field in ("coordinator_id", "generation", "member_id"):
        assert f"self.{field} =" in init, field
