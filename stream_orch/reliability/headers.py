"""Header names the engine writes, in one place.

Dead letters follow the shape of Kafka Connect's ``__connect.errors.*`` and Kafka Streams'
KIP-1034 ``__streams.errors.*`` headers (original topic/partition/offset, exception class,
message, stack trace), under our own short ``so.`` prefix so that no tool mistakes our records
for theirs. The record key and value are the original bytes, untouched.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterable
from typing import Any

# lineage, on every output record
TOPOLOGY = "so.topology"
VERSION = "so.version"
NODE = "so.node"
SRC_TOPIC = "so.src.topic"
SRC_PARTITION = "so.src.partition"
SRC_OFFSET = "so.src.offset"
PROCESSED_AT = "so.processed_at"
# lineage of a node with a model step: the model's name, version and file hash (12 hex digits)
MODEL_NAME = "so.model.name"
MODEL_VERSION = "so.model.version"
MODEL_SHA256 = "so.model.sha256"

# errors, on dead letters and retries
ERROR_REASON = "so.error.reason"
ERROR_CLASS = "so.error.class"
ERROR_MESSAGE = "so.error.message"
ERROR_STACKTRACE = "so.error.stacktrace"
ERROR_NODE = "so.error.node"
ERROR_TOPOLOGY = "so.error.topology"
ERROR_VERSION = "so.error.version"
ERROR_TOPIC = "so.error.topic"
ERROR_PARTITION = "so.error.partition"
ERROR_OFFSET = "so.error.offset"
ERROR_TIMESTAMP = "so.error.timestamp"
ERROR_ATTEMPTS = "so.error.attempts"
ERROR_FIRST_FAILURE = "so.error.first_failure"
ERROR_LAST_FAILURE = "so.error.last_failure"
ERROR_VALUE_DROPPED = "so.error.value_dropped"  # the value could not fit a record: its size

# watermarks across re-keying (see stream_orch.steps.source_watermarks): on the records a node
# writes to a topic a window step of the topology reads, "<node>/<source partition>/<event time>";
# WATERMARK_ONLY marks a record without a value that carries only that header
WATERMARK = "so.wm"
WATERMARK_ONLY = "so.wm.only"
# wall-clock punctuation (a node's `punctuate`): a watermark record that also carries this header,
# epoch ms, moves the watermark of the window steps of the partition it is on to that time
PUNCTUATION = "so.punct"

# retries
RETRY_ATTEMPT = "so.retry.attempt"
RETRY_DUE = "so.retry.due"
# a retry of one external target's delivery: the target's name (the node delivers it there only)
RETRY_TARGET = "so.retry.target"
# the n-th (n >= 1) of several records for one target from one input record (window results)
RETRY_INDEX = "so.retry.index"
ERROR_TARGET = "so.error.target"  # on a dead letter of an external target's delivery

# replay
REPLAYED_FROM = "so.replay.from"
REPLAY_ID = "so.replay.id"

ENGINE_PREFIX = "so."
STACKTRACE_LIMIT = 4000
MESSAGE_LIMIT = 1000
# The worker's producer has max_batch_size 1 MiB and Kafka's default message.max.bytes is
# 1048588: a record (key + value + headers + overhead) larger than this cannot be produced.
MAX_RECORD_BYTES = 1024 * 1024 - 512


def record_size(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> int:
    """An upper estimate of a record's size in a record batch (v2 format), with the batch header."""
    size = 61 + 21 + (len(key) if key else 0) + (len(value) if value else 0)
    for name, data in headers:
        size += len(name) + (len(data) if data else 0) + 10
    return size


def fit(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]
) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """Make an error record fit :data:`MAX_RECORD_BYTES`: first drop the stack trace and cut the
    message; if the original value alone is still too large, send no value and say so in
    ``so.error.value_dropped`` (its size) — the record's coordinates stay in the headers, so it can
    be found in the source topic. A dead letter that cannot be written would block the partition."""
    if record_size(key, value, headers) <= MAX_RECORD_BYTES:
        return value, headers
    slim = [(k, v[:200]) if k == ERROR_MESSAGE else (k, v) for k, v in headers if k != ERROR_STACKTRACE]
    if record_size(key, value, slim) <= MAX_RECORD_BYTES:
        return value, slim
    return None, [*slim, (ERROR_VALUE_DROPPED, str(len(value or b"")).encode())]


def now_ms() -> int:
    return int(time.time() * 1000)


def stacktrace(error: BaseException | None) -> str:
    if error is None or error.__traceback__ is None:
        return ""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return text[-STACKTRACE_LIMIT:]


def user_headers(headers: list[tuple[str, bytes]] | None) -> list[tuple[str, bytes]]:
    """The record's own headers without the engine's, so retries and replays do not pile them up."""
    if not headers:
        return []
    return [(k, v) for k, v in headers if not k.startswith(ENGINE_PREFIX)]


def is_watermark(headers: Iterable[tuple[str, bytes]] | None) -> bool:
    """A watermark record (``so.wm.only``, no value): engine bookkeeping between the nodes of a
    topology, not data; every reader of a topic but the event-time steps passes over it."""
    return any(name == WATERMARK_ONLY for name, _ in headers or ())


def punctuation_time(headers: Iterable[tuple[str, bytes]] | None) -> int | None:
    """The time of a punctuation record's ``so.punct`` header (None: none, or not epoch ms: a
    header is untrusted, and one that does not parse moves nothing)."""
    for name, value in headers or ():
        if name == PUNCTUATION:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
            return int(text) if text.isdigit() and len(text) <= 15 else None
    return None


def as_dict(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in (headers or [])}


MAX_INT64 = 2**63 - 1  # Kafka's offsets and timestamps are int64


def number(value: bytes | str | None) -> int | None:
    """A number header as the engine writes it: ASCII digits, within int64; else None. Headers
    are record data: ``int()`` would also take ``" 1_000"``, other scripts' digits, or 400 digits
    that overflow a timer later."""
    if isinstance(value, str):
        value = value.encode("utf-8", "replace")
    if not value or len(value) > 19 or not (value.isascii() and value.isdigit()):
        return None
    n = int(value)
    return n if n <= MAX_INT64 else None


def int_value(headers: Any, name: str) -> int:
    """An integer header such as ``so.retry.due`` (0 when absent or not a number)."""
    for key, value in headers:
        if key == name:
            return number(value) or 0
    return 0


def retry_due(headers: Any, now: int, longest_wait_ms: int) -> int:
    """When a retry record is due, epoch ms: its ``so.retry.due``, 0 (at once) when that is absent
    or not a number, and ``now`` when it lies more than ``longest_wait_ms`` (the node's longest
    retry delay) ahead. No tier waits that long, so the engine did not write it, or wrote it on a
    clock far ahead: it must not hold its retry partition for ever."""
    due = int_value(headers, RETRY_DUE)
    return now if due > now + longest_wait_ms else due
