"""Every Kafka client stream-orch builds, built here: one place decides isolation, batching,
idempotence and timeouts, so the runtime, the state stores and the tools cannot drift apart.

Internal readers (changelog restore, global tables, DLQ inspect/replay, the lag view) read
committed records only: a topology that runs exactly-once leaves aborted records in its
topics, and they must never become state or be replayed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from stream_orch.transport import produce_retries

log = logging.getLogger(__name__)

READ_COMMITTED = "read_committed"
# A fetch request names only the partitions with nothing buffered; if those are idle (retry tiers
# usually are) the broker holds it up to fetch_max_wait_ms, and records arriving meanwhile on the
# other partitions wait for it. Kafka's 500 ms default put hundreds of ms into p99 latency;
# 25 ms costs a few idle fetches per second.
FETCH_MAX_WAIT_MS = 25
# A killed worker's partitions wait for its session to expire unless it comes back under the same
# static member id; 10 s is aiokafka's default, and the broker's minimum is 6 s.
SESSION_TIMEOUT_MS = 10_000
# A member learns of a rebalance (another left or joined) at its next heartbeat: aiokafka's 3 s
# default put up to 3 s of stall into every hand-over; 1 s is a third of Kafka's recommended bound
# (session / 3) and one small request a second per group.
HEARTBEAT_INTERVAL_MS = 1_000
TXN_RETRY_BACKOFF_MS = 20


def consumer(client_args: dict[str, Any], *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer that commits only when told to and reads committed records; ``overrides`` win."""
    args = {**client_args, "enable_auto_commit": False, "isolation_level": READ_COMMITTED, **overrides}
    return AIOKafkaConsumer(*topics, **args)


def reader(client_args: dict[str, Any], **overrides: Any) -> AIOKafkaConsumer:
    """A consumer outside any group that reads committed records from the beginning."""
    return consumer(client_args, **{"group_id": None, "auto_offset_reset": "earliest", **overrides})


def node_consumer(
    client_args: dict[str, Any],
    group: str,
    *,
    batch_size: int,
    instance_id: str | None = None,
    isolation_level: str = READ_COMMITTED,
) -> AIOKafkaConsumer:
    """The consumer of a topology node: no auto-commit, range assignment (every member gets the
    same partition numbers of the input and of its retry topics, so a retried record meets the
    state of its partition again), and a static member id when the worker has one."""
    return consumer(
        client_args,
        group_id=group,
        group_instance_id=instance_id,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
        max_poll_records=batch_size,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=2 * 1024 * 1024,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        partition_assignment_strategy=(RangePartitionAssignor,),
        # Kept on, as the Java client has it (librdkafka's default is off): the broker checks a
        # batch's CRC when it is produced but serves fetches from its page cache unchecked, so
        # this is the one check between a broker's disk and our outputs and state. It costs
        # about 0.11 µs per 260-byte record (forwarding: 5-8 µs per record in all).
        check_crcs=True,
    )


def producer(
    client_args: dict[str, Any], *, transactional_id: str | None = None, **overrides: Any
) -> AIOKafkaProducer:
    """An idempotent producer with acks=all that takes whole record batches (1 MiB) at once;
    transactional when given an id (one per input partition of a node under exactly_once)."""
    args = {
        **client_args,
        "acks": "all",
        "enable_idempotence": True,
        "max_batch_size": 1024 * 1024,
        "max_request_size": 4 * 1024 * 1024,
        "linger_ms": 0,
        **overrides,
    }
    if transactional_id is not None:
        args["transactional_id"] = transactional_id
        # The next transaction's first request often meets the previous one still writing its
        # markers (CONCURRENT_TRANSACTIONS, retried): aiokafka's 100 ms default backoff then sits
        # in every batch's latency. The Java client backs off 20 ms in this case for that reason.
        args.setdefault("retry_backoff_ms", TXN_RETRY_BACKOFF_MS)
    produce_retries.install()
    return AIOKafkaProducer(**args)


async def stop_consumer(consumer: AIOKafkaConsumer, *, leave: bool = False) -> None:
    """``consumer.stop()``, except that a CancelledError raised from inside aiokafka (its fetcher
    cancels and awaits its own fetch task, which leaks out when the broker is gone) does not end
    the caller's task: only a cancellation of the task itself is passed on.

    ``leave``: a static member leaves its group too. aiokafka never sends LeaveGroup for a static
    member, so its partitions waited out the session timeout (measured on the Kafka 4.1 broker, two
    static members of six partitions, one stopped: the other had all six after 12.05 s); forgetting
    the instance id just before the stop makes aiokafka send its LeaveGroup by member id, which the
    broker honours for a static member as well (1.07 s with a 1 s heartbeat)."""
    if leave:
        coordinator = getattr(consumer, "_coordinator", None)
        if coordinator is not None and hasattr(coordinator, "_group_instance_id"):
            coordinator._group_instance_id = None
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        log.warning("consumer stop was interrupted inside aiokafka; continuing")
