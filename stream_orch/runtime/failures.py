"""Where a failed event goes: the next retry tier while its reason is retriable and tiers are left,
else the dead-letter topic; either way with its original bytes and the error headers."""

from __future__ import annotations

import logging
from collections import Counter

from stream_orch.observability.metrics import label_code
from stream_orch.reliability import headers as H
from stream_orch.runtime.batch import BatchStats, Failure
from stream_orch.runtime.output import Outbox
from stream_orch.topology.models import TopologySpec
from stream_orch.topology.naming import DELIVER_STAGE, dlq_topic, node_retry_topic

log = logging.getLogger(__name__)

DLQ_LOG_LINES_PER_BATCH = 5


def reasons_of(dead_lettered: Counter[tuple[str, str]]) -> Counter[str]:
    """A batch's dead letters by reason code, whatever step they failed at."""
    out: Counter[str] = Counter()
    for (reason, _step), n in dead_lettered.items():
        out[reason] += n
    return out


class FailureRouter:
    def __init__(self, spec: TopologySpec, node_name: str, *, tracebacks: bool = False) -> None:
        """``tracebacks``: the exception's stack trace in ``so.error.stacktrace`` (the setting
        ``dlq_tracebacks``); it names the source files by absolute path, so only when asked for."""
        node = spec.nodes[node_name]
        policy = node.errors
        self.delays = list(policy.retry.delays) if policy and policy.retry else []
        self._retry_on = set(policy.retry.on) if policy and policy.retry else set()
        self._node_spec = node
        self._dlq = dlq_topic(node)
        self._node = node_name
        self._topology = spec.topology
        self._version = spec.version
        self._tracebacks = tracebacks

    def route(self, failures: list[Failure], outbox: Outbox, stats: BatchStats, now: int) -> None:
        logged = 0
        for failure in failures:
            event = failure.event
            # a class name, or the reason's code: never the record's values the reason may quote
            error = failure.error
            error_class = type(error).__name__ if error is not None else label_code(failure.reason)
            stats.errors[error_class] += 1
            # `retry.on` chooses among the steps' failures; an external target's are always retried
            retriable = failure.retriable and (
                not self._retry_on
                or failure.target is not None
                or failure.reason in self._retry_on
                or error_class in self._retry_on
            )
            base = H.user_headers(event.headers) + self._error_headers(failure, error_class, now)
            # a target's failure keeps what was rendered for the target (its retry skips the steps)
            original = failure.payload if failure.target is not None else event.raw_value
            retry_value = None
            if retriable and event.attempt < len(self.delays):
                tier = event.attempt + 1
                due = max(now + self.delays[event.attempt], failure.not_before_ms or 0)
                headers = [*base, (H.RETRY_ATTEMPT, str(tier).encode()), (H.RETRY_DUE, str(due).encode())]
                if failure.target is not None:
                    headers.append((H.RETRY_TARGET, failure.target.encode()))
                    if failure.index:
                        headers.append((H.RETRY_INDEX, str(failure.index).encode()))
                retry_value, headers = H.fit(event.key, original, headers)
            if retry_value is not None:  # a retry that cannot carry its value goes to the DLQ
                outbox.add(
                    event.partition,
                    node_retry_topic(self._node_spec, tier),
                    event.key,
                    retry_value,
                    headers,
                    partition=event.source_partition,
                    timestamp_ms=event.timestamp,
                )
                stats.retried[tier] += 1
                continue
            value, base = H.fit(event.key, original, base)
            outbox.add(event.partition, self._dlq, event.key, value, base, timestamp_ms=event.timestamp)
            # an external target's delivery failed after the steps and routes (failure.target)
            step = DELIVER_STAGE if failure.target is not None else failure.step
            stats.dead_lettered[(label_code(failure.reason), step)] += 1
            logged += 1
            if logged <= DLQ_LOG_LINES_PER_BATCH:
                where = {
                    "node": self._node,
                    "topic": event.source_topic,
                    "partition": event.source_partition,
                    "offset": event.source_offset,
                }
                # the reason's code: the rest of a reason may quote the record's values, which
                # are logged at debug level only (the DLQ record carries the whole reason)
                log.warning("dead-lettered: %s", label_code(failure.reason), extra=where)
                log.debug("dead-lettered: %s", failure.reason, extra=where)
        if logged > DLQ_LOG_LINES_PER_BATCH:  # a flood of bad records must not flood the log too
            log.warning(
                "dead-lettered %d more records of this batch: %s",
                logged - DLQ_LOG_LINES_PER_BATCH,
                dict(reasons_of(stats.dead_lettered)),
                extra={"node": self._node, "topic": self._node_spec.input},
            )

    def _error_headers(self, failure: Failure, error_class: str, now: int) -> list[tuple[str, bytes]]:
        event = failure.event
        message = str(failure.error) if failure.error is not None else failure.reason
        headers = [
            (H.ERROR_REASON, failure.reason.encode()),
            (H.ERROR_CLASS, error_class.encode()),
            (H.ERROR_MESSAGE, message[: H.MESSAGE_LIMIT].encode()),
        ]
        if self._tracebacks:
            headers.append((H.ERROR_STACKTRACE, H.stacktrace(failure.error).encode()))
        return [
            *headers,
            (H.ERROR_NODE, self._node.encode()),
            (H.ERROR_TOPOLOGY, self._topology.encode()),
            (H.ERROR_VERSION, self._version.encode()),
            (H.ERROR_TOPIC, event.source_topic.encode()),
            (H.ERROR_PARTITION, str(event.source_partition).encode()),
            (H.ERROR_OFFSET, str(event.source_offset).encode()),
            (H.ERROR_TIMESTAMP, str(event.timestamp).encode()),
            (H.ERROR_ATTEMPTS, str(event.attempt + 1).encode()),
            (H.ERROR_FIRST_FAILURE, str(event.first_failure_ms or now).encode()),
            (H.ERROR_LAST_FAILURE, str(now).encode()),
            *(((H.ERROR_TARGET, failure.target.encode()),) if failure.target is not None else ()),
            *failure.headers,
        ]
