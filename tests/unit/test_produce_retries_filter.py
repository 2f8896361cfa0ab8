"""The filter that keeps aiokafka's NotEnoughReplicasError retry warnings (KIP-890 transaction
verification on a broker, see stream_orch.transport.produce_retries) out of a worker's log while
they are a burst, counts every one, lets a long-lasting series through, and touches nothing else."""

from __future__ import annotations

import logging

import pytest
from aiokafka.errors import NotEnoughReplicasError, NotLeaderForPartitionError
from aiokafka.structs import TopicPartition

from stream_orch.observability.metrics import Metrics
from stream_orch.transport import produce_retries as pr

MESSAGE = "Got error produce response on topic-partition %s, retrying. Error: %s"  # aiokafka's


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def retry(error: object, partition: int = 0) -> logging.LogRecord:
    return logging.LogRecord(
        pr.LOGGER, logging.WARNING, "sender.py", 870, MESSAGE, (TopicPartition("t", partition), error), None
    )


@pytest.fixture
def quiet() -> tuple[pr.QuietVerificationRetries, Clock]:
    clock = Clock()
    return pr.QuietVerificationRetries(clock), clock


def test_a_burst_of_retries_is_demoted_to_debug_and_counted(quiet) -> None:
    f, clock = quiet
    shown = []
    for i in range(40):
        clock.now += 0.02
        record = retry(NotEnoughReplicasError if i % 2 else NotEnoughReplicasError(), partition=i % 3)
        if f.filter(record):
            shown.append(record)
    assert shown == []  # the sender logger is at WARNING: a demoted record is not even emitted
    assert f.retries["NotEnoughReplicasError"] == 40 and f.demoted == 40


def test_a_demoted_record_is_emitted_as_debug_when_debug_is_on(quiet) -> None:
    f, _ = quiet
    logger = logging.getLogger(pr.LOGGER)
    before = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        record = retry(NotEnoughReplicasError)
        assert f.filter(record) and record.levelno == logging.DEBUG and record.levelname == "DEBUG"
    finally:
        logger.setLevel(before)


def test_retries_that_go_on_past_the_burst_limit_show_and_a_pause_starts_a_new_burst(quiet) -> None:
    f, clock = quiet
    passed = []
    for _ in range(int(pr.PERSIST_S) + 10):  # one retry a second on the same partition
        clock.now += 1.0
        record = retry(NotEnoughReplicasError)
        if f.filter(record):
            passed.append(record)
    # the first at 1 s, the n-th at n s: those more than PERSIST_S after the first pass (32nd..40th)
    assert len(passed) == 9 and all(r.levelno == logging.WARNING for r in passed)
    assert not f.filter(retry(NotEnoughReplicasError, partition=1))  # another partition: its own burst
    clock.now += pr.GAP_S + 1
    assert not f.filter(retry(NotEnoughReplicasError))  # after a pause: a new burst, quiet again


def test_every_other_record_passes_untouched(quiet) -> None:
    f, _ = quiet
    other = retry(NotLeaderForPartitionError)
    plain = logging.LogRecord(pr.LOGGER, logging.WARNING, "x", 1, "Could not send %r: %r", ("a", "b"), None)
    for record in (other, plain):
        assert f.filter(record) and record.levelno == logging.WARNING
    assert f.retries.total() == 0


async def test_the_counts_are_exported_and_every_producer_installs_the_filter() -> None:
    from prometheus_client import generate_latest

    from stream_orch.transport import clients

    producer = clients.producer({"bootstrap_servers": "127.0.0.1:1"})  # not started: no connection
    assert pr.QUIET_RETRIES in logging.getLogger(pr.LOGGER).filters
    pr.QUIET_RETRIES.filter(retry(NotEnoughReplicasError, partition=7))
    n = pr.QUIET_RETRIES.retries["NotEnoughReplicasError"]
    text = generate_latest(Metrics().registry).decode()
    assert f'stream_orch_produce_retries_total{{error="NotEnoughReplicasError"}} {float(n)}' in text
    await producer.stop()
