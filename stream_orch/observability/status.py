"""Burrow-style consumer status, evaluated over a sliding window of commit observations.

Pure logic (no Kafka, no clock): callers pass observations and ``now``, so every rule is
unit-testable with plain sequences. The rules and their order follow Burrow's evaluator
(``calculatePartitionStatus``), evaluated per partition when its current lag is > 0:

1. STOP   - the last commit is older than the window is long: ``now - last.ts > last.ts - first.ts``
            (and older than ``min_stop_seconds``, so a window of one or two close commits does not
            flag a consumer that merely committed a second ago);
2. OK     - some observation in the window had lag 0 (the consumer caught up recently);
3. REWIND - the committed offset went backwards somewhere in the window;
4. STALL  - commits keep coming but the offset never changes;
5. WARN   - the offset moves but the lag never decreases across the window (falling behind);
6. OK     - otherwise.

A partition with lag 0 is always OK. A partition with lag > 0 and fewer than two observations
has no status yet (``None``): one commit says nothing about a trend. A group's status is the
worst of its partitions (Burrow's severity order, which is the order of :class:`Status`).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum


class Status(IntEnum):
    """Partition / group status; the value is the exported numeric code, larger is worse."""

    OK = 0
    WARN = 1
    STOP = 2
    STALL = 3
    REWIND = 4

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Observation:
    """One commit: committed offset, lag at commit time (records) and commit time (epoch s)."""

    offset: int
    lag: int
    timestamp: float


def evaluate_partition(
    window: Sequence[Observation], current_lag: int, now: float, min_stop_seconds: float = 30.0
) -> Status | None:
    """Status of one partition from its commit window (oldest first) and its lag right now."""
    if current_lag <= 0:
        return Status.OK
    if not window:
        return None
    first, last = window[0], window[-1]
    if now - last.timestamp > max(last.timestamp - first.timestamp, min_stop_seconds):
        return Status.STOP
    if len(window) < 2:
        return None
    if any(o.lag <= 0 for o in window):
        return Status.OK
    pairs = list(itertools.pairwise(window))
    if any(b.offset < a.offset for a, b in pairs):
        return Status.REWIND
    if all(b.offset == a.offset for a, b in pairs):
        return Status.STALL
    if all(b.lag >= a.lag for a, b in pairs):
        return Status.WARN
    return Status.OK


def worst(statuses: Iterable[Status | None]) -> Status | None:
    """Group status: the worst known partition status, ``None`` if none is known yet."""
    known = [s for s in statuses if s is not None]
    return max(known) if known else None


PartitionKey = tuple[str, str, int]  # group, topic, partition


class StatusEvaluator:
    """Keeps a window of the last ``window`` commit observations per (group, topic, partition).

    Two ways to feed it:

    * :meth:`observe` - one call per real commit (the worker knows when it commits, so it can
      report every commit, including repeated commits of the same offset: the only way to see STALL);
    * :meth:`observe_poll` - for an external poller that only sees committed offsets: an
      observation is added when the committed offset changed since the previous poll, stamped with
      the poll time. Repeated commits of one offset are invisible this way, so a polled consumer that
      stops moving shows STOP rather than STALL.
    """

    def __init__(self, window: int = 10, min_stop_seconds: float = 30.0) -> None:
        if window < 2:
            raise ValueError("status window must hold at least 2 observations")
        self.window_size = window
        self.min_stop_seconds = min_stop_seconds
        self._windows: dict[PartitionKey, deque[Observation]] = {}

    def window(self, key: PartitionKey) -> tuple[Observation, ...]:
        return tuple(self._windows.get(key, ()))

    def observe(self, key: PartitionKey, offset: int, lag: int, timestamp: float) -> None:
        """Records one commit of ``offset`` at ``timestamp`` with ``lag`` records behind the log end."""
        win = self._windows.setdefault(key, deque(maxlen=self.window_size))
        if win and win[-1].offset == offset and win[-1].timestamp >= timestamp:
            return  # the same commit seen twice
        win.append(Observation(offset, max(lag, 0), timestamp))

    def observe_poll(self, key: PartitionKey, committed: int, lag: int, now: float) -> None:
        """Records a polled committed offset: a new observation only when the offset changed."""
        win = self._windows.get(key)
        if win and win[-1].offset == committed:
            return
        self.observe(key, committed, lag, now)

    def partition_status(self, key: PartitionKey, current_lag: int, now: float) -> Status | None:
        return evaluate_partition(self.window(key), current_lag, now, self.min_stop_seconds)

    def retain(self, keys: Iterable[PartitionKey]) -> None:
        """Forgets windows of partitions no longer reported (deleted groups, shrunk assignments)."""
        alive = set(keys)
        for key in list(self._windows):
            if key not in alive:
                del self._windows[key]
