"""A join's co-partitioned inputs read in event-time order, one side at most a bounded lead ahead.

A node with a ``join`` step reads its input and the join's topic with one consumer. aiokafka
fetches the two independently: one fetch response holds up to 2 MB of each partition (hours of
event time on a slow topic), the responses are drained in the order they came, and whichever
topic's records were drained first stays ahead for the whole run, by tens of minutes of event
time (measured on the reconciliation benchmark at 1 M records: the join then costs 21-28 or
30-39 µs per event depending on which side led, and the side ahead waits in the table). Kafka
Streams takes a task's next record by lowest timestamp across its partitions and idles
(``max.task.idle.ms``) while an input that still has data on the broker has none buffered.

:class:`ReadOrder` does the same per partition number ``p`` (the *group*: the input's partition
``p`` and each joined topic's partition ``p``, when this worker has them all): the records
fetched of the group's partitions are held here and handed to a batch in order of their record
timestamps, up to ``bound = min(frontier) + lead``, where a partition's *frontier* is the newest
timestamp fetched of it, less how far its topic is read ahead by design (``ahead_ms``: a joined
topic by its join's window, :func:`order_for`), while it still has records on the broker
(position below its last stable offset), and no bound at all once it has none (read to its end,
empty, or silent: a side with nothing to read never holds the other back). A partition with
records held here is left out of the fetches (``readable``): aiokafka keeps its next response
buffered and fetches nothing more of it, so memory stays at one fetch response and the records
held (at most what a batch takes). Liveness: when the node has had nothing at all to process for
``idle_s`` while records are held (a side with records on the broker that do not come: a
partition without a leader, a stuck fetch), the groups held back are read as fetched until the
side they wait for delivers again; and a group is so after ``HOLD_CAP_S`` of releasing nothing
even while other partitions keep the node busy. The idle bound counts only time with nothing to
process because, under load, the side behind is usually on its way: aiokafka hands buffered
responses over in the order they came, and a partition's response can sit behind seconds of
other partitions' records (measured on the benchmark: a 1 s wall-clock bound let the side ahead
go every few batches).

Why holding records here rather than ``pause``: a paused partition's fetched response is dropped
by aiokafka and fetched again on resume, and a bound judged on whole fetched chunks would still be
off by a chunk (a batch of one partition spans tens of minutes of event time on that benchmark).
Records held here were fetched, so the consumer's position is past them: nothing may be
committed past the first of them (:meth:`first_held`), and they are dropped with every seek back
to the committed offsets (:meth:`clear`).

Only the read order changes: every record is still processed, each topic's records in offset
order; the join's watermarks, late and unmatched rules are its own (steps/join.py). Timestamps
are the records' Kafka timestamps (event time where producers stamp it, else the append time).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import TopicPartition

from stream_orch.topology.models import JoinStep, NodeSpec

Batches = dict[TopicPartition, list[Any]]

_INF = float("inf")

# The longest a group waits for a side that has records on the broker, while the node processes
# other partitions' records (with nothing to process, ``idle_s`` bounds the wait).
HOLD_CAP_S = 30.0


class ReadOrder:
    def __init__(
        self,
        input_topic: str,
        joined: Iterable[str],
        *,
        ahead_ms: dict[str, int] | None = None,
        lead_ms: int,
        idle_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.input = input_topic
        self.joined = [t for t in dict.fromkeys(joined) if t != input_topic]
        self.topics = frozenset([input_topic, *self.joined])
        # how far in event time each topic is read ahead of the input by design (order_for)
        self.ahead_ms = {t: (ahead_ms or {}).get(t, 0) for t in self.topics}
        self.ahead_ms[input_topic] = 0
        self.lead_ms = lead_ms
        self.idle_s = idle_s
        self._clock = clock
        self._held: Batches = {}  # fetched, not handed to a batch yet (offset order)
        self._newest: dict[TopicPartition, int] = {}  # newest timestamp fetched per partition
        self._read: dict[TopicPartition, int] = {}  # newest timestamp handed to a batch
        self._blocked_since: dict[int, float] = {}  # group -> since when its bound released nothing
        # group -> the sides it waited for in vain: read as fetched until one of them delivers
        self._idle: dict[int, set[TopicPartition]] = {}
        self._late: dict[int, set[TopicPartition]] = {}  # group -> the sides its bound waits for
        self._stalled_since: float | None = None  # since when fetches hand over nothing
        self._held_at: dict[TopicPartition, float] = {}  # since when a partition has records here
        # for /metrics (observability/read_order_metrics.py)
        self.held_s: dict[str, float] = dict.fromkeys(self.topics, 0.0)  # by topic
        self.lead_max_s: dict[str, float] = dict.fromkeys(self.topics, 0.0)  # how far each side led

    # ------------------------------------------------------------------ what to fetch

    def held(self) -> set[TopicPartition]:
        """The partitions with records held here: left out of the next fetch."""
        return set(self._held)

    def first_held(self, tp: TopicPartition) -> int | None:
        """The offset of the first record held of ``tp`` (the consumer's position is past it)."""
        records = self._held.get(tp)
        return records[0].offset if records else None

    # ------------------------------------------------------------------ a fetch's records

    def add(self, batches: Batches, groups: set[int]) -> Batches:
        """Take the records of the partitions in ``groups`` (the partition numbers whose whole
        group this worker reads) into the order; return the others as they are."""
        rest: Batches = {}
        now = self._clock()
        for tp, records in batches.items():
            if tp.topic not in self.topics or tp.partition not in groups or not records:
                rest[tp] = records
                continue
            newest = max(r.timestamp for r in records) - self.ahead_ms[tp.topic]
            if newest > self._newest.get(tp, -1):
                self._newest[tp] = newest
            have = self._held.get(tp)
            if have is None:
                self._held[tp] = list(records)
                self._held_at[tp] = now
            else:
                have.extend(records)
            # the side a group waits for delivers: the wait, or the idling, is over
            p = tp.partition
            if tp in self._idle.get(p, ()):
                del self._idle[p]
            if tp in self._late.get(p, ()):
                self._blocked_since.pop(p, None)
        return rest

    def waiting(self, groups: set[int]) -> list[TopicPartition]:
        """The partitions :meth:`release` asks ``behind`` about: every side of a group of
        ``groups`` with records held."""
        held = {tp.partition for tp in self._held if tp.partition in groups}
        return [TopicPartition(t, p) for p in sorted(held) for t in (self.input, *self.joined)]

    def release(self, groups: set[int], behind: Callable[[TopicPartition], bool]) -> Batches:
        """The records held of ``groups`` that are due, by the bound above; ``behind(tp)``: the
        partition still has records on the broker (not read to its last stable offset)."""
        out: Batches = {}
        now = self._clock()
        for p in {tp.partition for tp in self._held}:
            if p not in groups:
                continue
            members = [TopicPartition(t, p) for t in (self.input, *self.joined)]
            bound = self._bound(p, members, behind, now)
            released = False
            for tp in members:
                records = self._held.get(tp)
                if not records:
                    continue
                cut = _cut(records, bound + self.ahead_ms[tp.topic])
                if cut:
                    out[tp] = go = records if cut == len(records) else records[:cut]
                    released = True
                    self._read[tp] = max(self._read.get(tp, -1), max(r.timestamp for r in go))
                    if cut == len(records):
                        del self._held[tp]
                        self.held_s[tp.topic] += now - self._held_at.pop(tp)
                    else:
                        self._held[tp] = records[cut:]
            if released:
                self._blocked_since.pop(p, None)
            else:
                self._blocked_since.setdefault(p, now)
            self._note_lead(p)
        return out

    def _bound(
        self, p: int, members: list[TopicPartition], behind: Callable[[TopicPartition], bool], now: float
    ) -> float:
        if p in self._idle:
            return _INF
        # a side still behind on the broker bounds the others by its newest record fetched (one
        # with nothing fetched yet holds them all); a side read to its end bounds nothing
        frontiers = {tp: self._newest.get(tp, -_INF) for tp in members if behind(tp)}
        frontier = min(frontiers.values(), default=_INF)
        self._late[p] = {tp for tp, f in frontiers.items() if f == frontier}
        since = self._blocked_since.get(p)
        if since is not None and now - since >= HOLD_CAP_S:
            self._idle[p] = self._late[p]  # until one of them delivers (add)
            self._blocked_since.pop(p, None)
            return _INF
        return frontier + self.lead_ms

    def handed_over(self, records: int) -> bool:
        """A fetch handed ``records`` to a batch. Returns True when nothing has been handed over
        for ``idle_s`` while records are held: the groups held back are then read as fetched
        until the side each waits for delivers (the caller releases again at once)."""
        if records or not self._held:
            self._stalled_since = None
            return False
        now = self._clock()
        if self._stalled_since is None:
            self._stalled_since = now
            return False
        if now - self._stalled_since < self.idle_s:
            return False
        self._stalled_since = None
        for p in {tp.partition for tp in self._held}:
            if p not in self._idle and self._late.get(p):
                self._idle[p] = self._late[p]
                self._blocked_since.pop(p, None)
        return True

    def _note_lead(self, p: int) -> None:
        """The largest lead of each side so far, in what was handed to batches, for /metrics."""
        mine = self._read.get(TopicPartition(self.input, p))
        if mine is None:
            return
        for topic in self.joined:
            other = self._read.get(TopicPartition(topic, p))
            if other is None:
                continue
            lead = (mine - other) / 1000
            side = self.input if lead > 0 else topic
            if abs(lead) > self.lead_max_s[side]:
                self.lead_max_s[side] = abs(lead)

    def leads(self) -> dict[tuple[str, int], float]:
        """(joined topic, partition) -> seconds the input's newest record handed to a batch is
        ahead of the joined topic's (negative: behind), where both were read."""
        out = {}
        for tp, mine in self._read.items():
            if tp.topic == self.input:
                for topic in self.joined:
                    other = self._read.get(TopicPartition(topic, tp.partition))
                    if other is not None:
                        out[(topic, tp.partition)] = (mine - other) / 1000
        return out

    # ------------------------------------------------------------------ ownership

    def clear(self) -> None:
        """Forget everything held and seen: the partitions are sought back to their committed
        offsets (a take-over, a start over)."""
        now = self._clock()
        for tp, since in self._held_at.items():
            self.held_s[tp.topic] += now - since
        self._held.clear()
        self._held_at.clear()
        self._newest.clear()
        self._read.clear()
        self._blocked_since.clear()
        self._idle.clear()
        self._late.clear()
        self._stalled_since = None


def _cut(records: list[Any], bound: float) -> int:
    """How many of ``records`` (offset order) are due: the prefix up to the first one past
    ``bound``."""
    if bound == _INF:
        return len(records)
    for i, record in enumerate(records):
        if record.timestamp > bound:
            return i
    return len(records)


def groups_of(order: ReadOrder, assigned: Iterable[TopicPartition]) -> set[int]:
    """The partition numbers whose every side (the input and each joined topic) is ``assigned``:
    only those are read in order (a worker without a side's partition cannot wait for it)."""
    have: dict[int, set[str]] = {}
    for tp in assigned:
        if tp.topic in order.topics:
            have.setdefault(tp.partition, set()).add(tp.topic)
    return {p for p, topics in have.items() if len(topics) == len(order.topics)}


def order_for(node: NodeSpec, lead: tuple[int, float] | None) -> ReadOrder | None:
    """The read order of ``node`` (its input and its join steps' topics), with ``lead`` = (lead
    bound in ms, idle bound in s); None for a node without a join on another topic (it pays
    nothing) or with ``lead`` None (settings: join_read_order off).

    An interval join's topic is read ahead of the input by the join's ``after`` + ``grace`` (with
    ``after: {field, max}``, its max): an input record then finds every partner already in the
    table when it arrives, and the other side's time is already past its window, so it is matched
    or unmatched at once instead of waiting in the table to be rewritten when a partner comes
    (measured on the reconciliation benchmark at 1 M records: 21-28 µs per event against 30-39,
    peak RSS 241 against 300 MB). An as_of join's topic is read ``lead`` ahead: an input record
    at ``t`` takes the latest record at or before ``t``, which must have been read."""
    ahead: dict[str, int] = {}
    for step in node.steps:
        if isinstance(step, JoinStep) and step.topic != node.input and lead is not None:
            if step.kind == "as_of":
                window = lead[0]
            else:
                window = (step.after if isinstance(step.after, int) else step.after.max) + step.grace
            ahead[step.topic] = max(ahead.get(step.topic, 0), window)
    if lead is None or not ahead:
        return None
    return ReadOrder(node.input, ahead, ahead_ms=ahead, lead_ms=lead[0], idle_s=lead[1])
