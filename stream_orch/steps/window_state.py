"""How the ``window`` step keeps its state in a table, per input partition, in bounded records.

Keys (the separators are ASCII control characters, so they sort before any printable key and
never meet a window key's text in a range):

- ``<FS>`` (0x1c): the partition's watermark and, per topic read (input and retry tiers), the
  next offset not yet applied: ``{"w": watermark, "o": {topic: offset}}``; with per-source
  watermarks also ``"s": {source: [time, heard]}`` (:mod:`stream_orch.steps.source_watermarks`).
- ``<GS><key>`` (0x1d): sessions only: the key's open sessions, ``{"k": key, "w": [[start, end,
  n, acc], ...]}`` in start order (a key rarely has more than one or two).
- ``<RS><close:015d><RS><start:015d><RS><key>`` (0x1e): a tumbling or hopping window's record
  ``{"k": key, "s": start, "e": end, "n": records, "a": acc}``, or for a session a pointer (value
  1) to a session of the key with that start. The close time (epoch ms, 15 digits) leads, so the
  windows to close at a watermark are the key range ``[<RS>, <RS><watermark + 1>)``: one bounded
  range read per partition and batch, never a scan of the open windows. A fixed window's close
  time never changes, so its record needs no separate index; a session's does, so it has one.

Accumulators (``acc``): see :mod:`stream_orch.steps.window_aggs` (each is bounded, so no record
grows without bound with a key's rate).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stream_orch.steps.base import Event, Table
from stream_orch.steps.source_watermarks import Sources
from stream_orch.steps.window_aggs import COLLECT_MAX, FUNCTIONS, Session
from stream_orch.steps.window_aggs import copy as _copy

__all__ = ["COLLECT_MAX", "FUNCTIONS", "INDEX", "META", "SESSIONS", "PartitionState", "fixed_key"]

META = "\x1c"
SESSIONS = "\x1d"
INDEX = "\x1e"


def fixed_key(close: int, start: int, keystr: str) -> str:
    return f"{INDEX}{close:015d}{INDEX}{start:015d}{INDEX}{keystr}"


def close_of_key(table_key: str) -> int:
    return int(table_key[1:16])


def up_to(watermark: int) -> str:
    """The end (exclusive) of the key range of windows closing at or before ``watermark``."""
    return f"{INDEX}{watermark + 1:015d}"


# ---------------------------------------------------------------------------- one partition


class PartitionState:
    """One partition's state for one batch: read from the table on first use, changed in memory,
    written back by :meth:`save` (the table's values are never changed in place)."""

    __slots__ = (
        "deleted",
        "found",
        "keys",
        "offsets",
        "partition",
        "sources",
        "trigger",
        "watermark",
        "windows",
    )

    def __init__(
        self, partition: int, watermark: int, offsets: dict[str, int], sources: Sources | None = None
    ) -> None:
        self.partition = partition
        self.watermark = watermark
        self.offsets = offsets
        self.sources: Sources = sources if sources is not None else {}  # per-source watermarks
        self.trigger: Event | None = None  # the last record of the batch on this partition
        self.windows: dict[str, dict[str, Any]] = {}  # fixed windows touched, by table key
        self.keys: dict[str, dict[str, Any]] = {}  # sessions touched, by key text
        self.deleted: set[str] = set()
        self.found: set[str] = set()  # keys whose sessions were loaded through the index

    @classmethod
    def load(cls, table: Table, partition: int) -> PartitionState:
        meta = table.get(META, partition)
        if meta is None:
            return cls(partition, -1, {})
        return cls(partition, meta["w"], dict(meta["o"]), {k: [*v] for k, v in meta.get("s", {}).items()})

    def replayed(self, event: Event) -> bool:
        """Whether this record was applied before (a replay after a crash); else it is noted."""
        self.trigger = event
        offset = event.offset
        if offset < 0:
            return False
        done = self.offsets.get(event.topic)
        if done is not None and offset < done:
            return True
        self.offsets[event.topic] = offset + 1
        return False

    # ------------------------------------------------------------- fixed windows

    def window(self, table: Table, key: str) -> dict[str, Any] | None:
        win = self.windows.get(key)
        if win is None:
            stored = table.get(key, self.partition)
            if stored is None:
                return None
            win = self.windows[key] = {**stored, "a": _copy(stored.get("a"))}
        return win

    def new_window(self, key: str, k: Any, start: int, end: int, acc: Any) -> dict[str, Any]:
        win = self.windows[key] = {"k": k, "s": start, "e": end, "n": 0, "a": acc}
        return win

    def close_fixed(self, table: Table) -> list[dict[str, Any]]:
        """The windows the watermark has closed (stored or touched in this batch), now deleted."""
        if self.watermark < 0:
            return []
        closed = dict(table.scan(self.partition, INDEX, up_to(self.watermark)))
        for key, win in self.windows.items():
            if close_of_key(key) <= self.watermark:
                closed[key] = win
        for key in closed:
            self.windows.pop(key, None)
            self.deleted.add(key)
        return list(closed.values())

    # ------------------------------------------------------------- sessions

    def sessions(self, table: Table, k: Any, keystr: str) -> dict[str, Any]:
        entry = self.keys.get(keystr)
        if entry is None:
            stored = table.get(SESSIONS + keystr, self.partition)
            if stored is None:
                entry = {"k": k, "w": []}
            else:
                entry = {"k": stored["k"], "w": [[s, e, n, _copy(a)] for s, e, n, a in stored["w"]]}
            self.keys[keystr] = entry
        return entry

    def close_sessions(self, table: Table, close_of: Callable[[Session], int]) -> list[dict[str, Any]]:
        """The sessions the watermark has closed (found through the index, or touched in this
        batch), taken out of their keys; every index entry in the closed range is deleted."""
        if self.watermark < 0:
            return []
        found = [key for key, _ in table.scan(self.partition, INDEX, up_to(self.watermark))]
        self.deleted.update(found)
        for index in found:
            keystr = index.split(INDEX, 3)[3]
            self.found.add(keystr)
            self.sessions(table, None, keystr)
        closed = []
        for entry in self.keys.values():
            keep = []
            for s in entry["w"]:
                if close_of(s) <= self.watermark:
                    closed.append({"k": entry["k"], "s": s[0], "e": s[1], "n": s[2], "a": s[3]})
                else:
                    keep.append(s)
            entry["w"] = keep
        return closed

    # ------------------------------------------------------------- writing back

    def save(self, table: Table, partition: int, close_of: Callable[[Session], int]) -> None:
        for key in self.deleted:
            table.delete(key, partition)
        for key, win in self.windows.items():
            table.set(key, win, partition)
        for keystr, entry in self.keys.items():
            stored = table.get(SESSIONS + keystr, partition)
            before = {fixed_key(close_of(s), s[0], keystr) for s in stored["w"]} if stored else set()
            after = {fixed_key(close_of(s), s[0], keystr) for s in entry["w"]}
            for index in before - after:
                table.delete(index, partition)
            # a key found through the index had its index entries in the closed range deleted; its
            # open sessions get theirs again (also one written under another close rule)
            for index in after if keystr in self.found else after - before:
                table.set(index, 1, partition)
            if entry["w"]:
                table.set(SESSIONS + keystr, entry, partition)
            elif stored is not None:
                table.delete(SESSIONS + keystr, partition)
        if self.trigger is not None:
            meta: dict[str, Any] = {"w": self.watermark, "o": self.offsets}
            if self.sources:
                meta["s"] = self.sources
            table.set(META, meta, partition)
