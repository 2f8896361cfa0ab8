"""aiokafka's warning for a produce retried after ``NotEnoughReplicasError``, made quiet while
the retries are a short burst, and counted.

Since Kafka 3.6 (KIP-890, ``transaction.partition.verification.enable``, on by default) a
partition leader asks the transaction coordinator whether a transactional produce belongs to
an ongoing transaction. A transient answer (the previous transaction still writing its
markers, the coordinator loading) reaches clients older than transaction version 2, aiokafka
among them (Produce v7 at most), as ``NOT_ENOUGH_REPLICAS``: the one retriable error they all
retry without a metadata refresh (KAFKA-15459, KAFKA-16386). aiokafka retries it and logs a
WARNING each time; a worker starting under exactly_once, with a transaction per input
partition, logged dozens, on a single broker that has no replicas to lack. Measured on a
second local broker (Kafka 4.1, this project's server.properties), the two-node topology of
tests/integration/test_produce_retries_quiet.py: 14, 7 and 4 such retries per start with
verification on, 0, 0 and 0 with it off.

Verification stays on (it keeps a late produce from starting a hanging transaction), and the
client cannot tell a verification retry from a real lack of in-sync replicas (Produce v7 has
no error message). So the warning is demoted to DEBUG while the retries of a partition are a
burst (younger than ``PERSIST_S`` since the burst began; a pause of ``GAP_S`` ends it), and
every one is counted (``stream_orch_produce_retries_total``). Retries that go on longer are
no burst: their warnings pass as aiokafka wrote them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from aiokafka.errors import NotEnoughReplicasError

LOGGER = "aiokafka.producer.sender"
RETRY_MESSAGE = "Got error produce response on topic-partition"
PERSIST_S = 30.0  # a burst of retries longer than this is a real problem: the warnings pass
GAP_S = 5.0  # no retry of a partition for this long ends its burst


class QuietVerificationRetries(logging.Filter):
    """On aiokafka's producer sender logger: ``NotEnoughReplicasError`` retries become DEBUG
    records while their partition's burst is young; every record else passes untouched."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._bursts: dict[str, tuple[float, float]] = {}  # partition -> (burst began, last retry)
        self.retries: Counter[str] = Counter()  # error name -> retries seen
        self.demoted = 0

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not (
            isinstance(record.msg, str)
            and record.msg.startswith(RETRY_MESSAGE)
            and isinstance(args, tuple)
            and len(args) == 2
            and _is_not_enough_replicas(args[1])
        ):
            return True
        self.retries["NotEnoughReplicasError"] += 1
        now = self._clock()
        partition = str(args[0])
        began, last = self._bursts.get(partition, (now, now))
        if now - last > GAP_S:
            began = now
        self._bursts[partition] = (began, now)
        if len(self._bursts) > 10_000:  # partitions long quiet are forgotten
            self._bursts = {p: b for p, b in self._bursts.items() if now - b[1] <= GAP_S}
        if now - began > PERSIST_S:
            return True
        self.demoted += 1
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _is_not_enough_replicas(error: object) -> bool:
    return error is NotEnoughReplicasError or isinstance(error, NotEnoughReplicasError)


QUIET_RETRIES = QuietVerificationRetries()  # one per process: the logger is one per process


def install() -> QuietVerificationRetries:
    """Put :data:`QUIET_RETRIES` on aiokafka's sender logger (once, whoever calls first)."""
    logger = logging.getLogger(LOGGER)
    if QUIET_RETRIES not in logger.filters:
        logger.addFilter(QUIET_RETRIES)
    return QUIET_RETRIES
