"""Where a node's consumer stands: seeking its partitions to the group's committed offsets on a
take-over, reading its group and positions for the SIGUSR1 dump and its partitions' ends for the
lag of a commit; and the listener that
hands its rebalances to the node. All touch the consumer only; the dump reads aiokafka internals
(there is no public, synchronous way to get positions), best effort, so that knowledge stays in
the transport package."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition


async def seek_committed(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition], timeout_s: float
) -> None:
    """Each of ``partitions`` at its committed offset; one never committed at its beginning
    (auto_offset_reset=earliest)."""
    if not partitions:
        return
    committed = await asyncio.wait_for(
        asyncio.gather(*(consumer.committed(tp) for tp in partitions)), timeout_s
    )
    beginning = []
    for tp, offset in zip(partitions, committed, strict=True):
        if offset is None or offset < 0:
            beginning.append(tp)
        else:
            consumer.seek(tp, offset)
    if beginning:
        await consumer.seek_to_beginning(*beginning)


def consumer_view(consumer: AIOKafkaConsumer) -> dict[str, Any]:
    """The consumer's group (coordinator, generation, member id), its paused partitions and each
    assigned partition's (position, high watermark)."""
    coordinator = getattr(consumer, "_coordinator", None)
    subscription = consumer._subscription.subscription
    parts = {}
    for tp in sorted(consumer.assignment()):
        with contextlib.suppress(Exception):
            # a partition not yet positioned (being reset or seeking) is listed with none
            state = subscription.assignment.state_value(tp) if subscription else None
            position = state.position if state is not None and state.has_valid_position else None
            parts[f"{tp.topic}[{tp.partition}]"] = (position, consumer.highwater(tp))
    return {
        "paused": sorted(f"{tp.topic}[{tp.partition}]" for tp in consumer.paused()),
        "coordinator_id": getattr(coordinator, "coordinator_id", None),
        "generation": getattr(coordinator, "generation", None),
        "member_id": getattr(coordinator, "member_id", None),
        "position_highwater": parts,
    }


def last_stable_offsets(
    consumer: AIOKafkaConsumer | None, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """The last stable offset of each of ``partitions`` the consumer knows (transaction markers
    are no lag); none without a consumer."""
    if consumer is None:
        return {}
    known = {tp: consumer.last_stable_offset(tp) for tp in partitions}
    return {tp: end for tp, end in known.items() if end is not None}


class RebalanceCalls(ConsumerRebalanceListener):
    """A rebalance listener that hands each revoked or assigned set (a copy: aiokafka keeps its
    own) to a callable."""

    def __init__(
        self,
        revoked: Callable[[set[TopicPartition]], Awaitable[None]],
        assigned: Callable[[set[TopicPartition]], Awaitable[None]],
    ) -> None:
        self._revoked = revoked
        self._assigned = assigned

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._assigned(set(assigned))
