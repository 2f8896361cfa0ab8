"""Watermarks across re-keying: a window's watermark as the minimum over the writer's sources.

A node that re-keys (routes to a topic keyed by another field) writes each batch per input
partition, so in each partition of its output the event time of records from different source
partitions interleaves and steps backwards by as much as a batch spans. A window reading that
topic with the greatest time seen as its watermark would call on-time records late.

So (Flink's rule, our own code): when an event-time step (window, join, sliding aggregate) reads
a topic that a node of the same topology writes (and the reading node has ``watermarks:
per_source``, the default), the writer puts ``so.wm: <node>/<source partition>/<event time>`` on
every record it writes there, the greatest event time (the step's ``time_field``) of that source
partition it has seen, this
record included; and at the end of each batch it writes one watermark record per partition of
the topic for every source partition of the batch (no key, no value, ``so.wm`` and
``so.wm.only``), so a source partition whose records all went elsewhere still moves every
reader. Readers skip watermark records before any step (never a DLQ, not counted as input).

The reader keeps per partition, in the window's state (same changelog, same batch), the
greatest time heard from each source and when it was heard; its watermark is the minimum over
the sources heard from within ``idle_timeout`` (a source the worker has not heard from for that
long, by its clock, is left out; all of them silent: the watermark stays), and never moves back.
Silence is counted only while the partition hears something: a pause of all of them (a broker
outage, the writer stopped) counts for at most a quarter of ``idle_timeout``, so the first source
heard after it does not leave the others out.
Every source partition of each writer's input (the topology's partition counts) is expected from
the start, so a source not heard from yet holds windows open until ``idle_timeout``. A record
without ``so.wm`` (written by a producer outside the topology) counts as the source ``-`` with
its own time. After a restart the idle clock starts again at the take-over, so a reader with a
backlog does not leave out sources whose records are still in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from stream_orch.reliability.headers import WATERMARK, WATERMARK_ONLY
from stream_orch.reliability.headers import is_watermark as is_watermark_record

if TYPE_CHECKING:
    from stream_orch.topology.models import TopologySpec

__all__ = [
    "IDLE_DEFAULT_MS",
    "WATERMARK",
    "WATERMARK_ONLY",
    "Sources",
    "expected_sources",
    "header",
    "hear",
    "is_watermark_record",
    "minimum",
    "read",
    "watched_topics",
]

OUTSIDE = "-"  # the source of records without so.wm

Sources = dict[str, list[int]]  # source -> [greatest event time, last heard (worker clock, ms)]


#: how long a join's or sliding aggregate's source may be silent (a window has `idle_timeout`)
IDLE_DEFAULT_MS = 60_000

#: a gap longer than idle_timeout / PAUSE_PART in everything a partition hears is a pause
PAUSE_PART = 4


def watched_topics(spec: TopologySpec) -> dict[str, str]:
    """Topic -> the event-time field of the step that reads it, for every topic a node with
    ``watermarks: per_source`` reads with an event-time step: a window or sliding aggregate (its
    input), a join (its input and the other stream). Its writers tag what they write there."""
    from stream_orch.topology.models import AggregateStep, JoinStep, WindowStep

    out: dict[str, str] = {}
    for node in spec.nodes.values():
        if node.watermarks != "per_source":
            continue
        for step in node.steps:
            if isinstance(step, WindowStep | JoinStep) or (isinstance(step, AggregateStep) and step.window):
                out.setdefault(node.input, step.time_field)
            if isinstance(step, JoinStep):
                out.setdefault(step.topic, step.time_field)
    return out


def expected_sources(spec: TopologySpec, node_name: str, topic: str | None = None) -> frozenset[str]:
    """The sources a per_source event-time step of ``node_name`` waits for on ``topic`` (default:
    the node's input): one per partition of the input of every other node that routes to it
    (empty: no node of the topology writes it, or the node reads ``per_partition``)."""
    node = spec.nodes[node_name]
    if node.watermarks != "per_source":
        return frozenset()
    read = topic or node.input
    out = set()
    for name, writer in spec.nodes.items():
        if name == node_name:
            continue
        if any(t.topic == read for route in writer.routes for t in route.targets()):
            out.update(source(name, p) for p in range(spec.topics[writer.input].partitions))
    return frozenset(out)


def source(node: str, partition: int) -> str:
    return f"{node}/{partition}"


def header(node: str, partition: int, watermark: int) -> tuple[str, bytes]:
    return WATERMARK, f"{node}/{partition}/{watermark}".encode()


def read(headers: Iterable[tuple[str, bytes]] | None) -> tuple[str, int] | None:
    """(source, watermark) from a record's ``so.wm``; None without one or when it is malformed
    (headers are record data: a bad one is treated as absent)."""
    if not headers:
        return None
    for name, value in headers:
        if name == WATERMARK and value:
            src, _, mark = value.decode("utf-8", "replace").rpartition("/")
            if src and mark.isascii() and mark.isdigit() and len(mark) <= 18:
                return src, int(mark)
    return None


def hear(
    sources: Sources, headers: Iterable[tuple[str, bytes]] | None, t: int, now: int, idle_ms: int
) -> bool:
    """A record (``t``: its time; -1 for a watermark record) heard at ``now``: its source (from
    ``so.wm``, else :data:`OUTSIDE` at ``t``) is heard from, and its time moves; returns whether
    the time moved (the minimum may then move too). A pause of the whole partition is first taken
    out of every source's silence (:func:`_resume`)."""
    found = read(headers)
    src, mark = found if found is not None else (OUTSIDE, t)
    if mark < 0:
        return False
    have = sources.get(src)
    if have is None or now - have[1] > idle_ms // PAUSE_PART:
        _resume(sources, now, idle_ms // PAUSE_PART)
    if have is None:
        sources[src] = [mark, now]
        return True
    have[1] = now
    if mark <= have[0]:
        return False
    have[0] = mark
    return True


def _resume(sources: Sources, now: int, pause_ms: int) -> None:
    """Silence is counted while the partition hears something: when nothing at all was heard for
    longer than ``pause_ms`` (a broker outage, the writer node stopped, this worker stalled), only
    the first ``pause_ms`` of that gap count, so the first source heard after it does not leave
    the others out as idle. A source that stays silent while the others are heard is still left
    out once its silence outside pauses reaches ``idle_timeout``."""
    last = max((heard for _mark, heard in sources.values()), default=now)
    gap = now - last - pause_ms
    if gap > 0:
        for have in sources.values():
            have[1] += gap


def minimum(sources: Sources, now: int, since: int, idle_ms: int) -> int | None:
    """The least time over the sources heard from within ``idle_ms`` of ``now`` (``since``: when
    this worker took the partition over, before which nothing counts as silence); None when all
    are silent."""
    least: int | None = None
    for mark, heard in sources.values():
        if now - max(heard, since) > idle_ms:
            continue
        if least is None or mark < least:
            least = mark
    return least
