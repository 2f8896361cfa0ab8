"""The ledger of a DLQ replay: which dead letters were replayed, as runs of offsets.

A compacted topic ``stream-orch-replay.<dlq topic>`` (or ``stream-orch-replay.<group>``) holds
records that each say "these offsets of this DLQ partition were replayed"; :mod:`.dlq` writes
them in the same transaction as the replayed records, and reads them back into a
:class:`Replayed` bitmap before it replays anything.
"""

from __future__ import annotations

import orjson

from stream_orch.reliability import headers as H

LEDGER_PREFIX = "stream-orch-replay."
LEDGER_RANGES = 2_000  # runs of offsets per ledger record (a record stays far below 1 MB)


def ledger_topic(dlq: str, group: str | None = None) -> str:
    return f"{LEDGER_PREFIX}{group or dlq}"


class Replayed:
    """The offsets of one DLQ that a ledger holds as replayed: a bitmap per partition over the
    offsets the partition had when the run started, ``[start, end)``, one bit per dead letter
    (1 M dead letters: 125 kB). Ledger entries outside those bounds cannot be met by this run
    and are not kept."""

    def __init__(self, bounds: dict[int, tuple[int, int]]) -> None:
        self._bounds = dict(bounds)
        self._bits = {p: bytearray((end - start + 7) // 8) for p, (start, end) in bounds.items()}

    def _index(self, partition: int, offset: int) -> int | None:
        bounds = self._bounds.get(partition)
        if bounds is None or not bounds[0] <= offset < bounds[1]:
            return None
        return offset - bounds[0]

    def add(self, partition: int, offset: int) -> None:
        i = self._index(partition, offset)
        if i is not None:
            self._bits[partition][i >> 3] |= 1 << (i & 7)

    def add_range(self, partition: int, first: int, last: int) -> None:
        bounds = self._bounds.get(partition)
        if bounds is None:
            return
        for offset in range(max(first, bounds[0]), min(last, bounds[1] - 1) + 1):
            self.add(partition, offset)

    def discard(self, partition: int, offset: int) -> None:
        i = self._index(partition, offset)
        if i is not None:
            self._bits[partition][i >> 3] &= ~(1 << (i & 7)) & 0xFF

    def __contains__(self, coords: tuple[int, int]) -> bool:
        i = self._index(*coords)
        return i is not None and bool(self._bits[coords[0]][i >> 3] & (1 << (i & 7)))


def offset_ranges(offsets: list[int]) -> list[list[int]]:
    """Increasing offsets as ``[first, last]`` runs: ``[3, 4, 5, 9]`` -> ``[[3, 5], [9, 9]]``."""
    ranges: list[list[int]] = []
    for offset in offsets:
        if ranges and offset == ranges[-1][1] + 1:
            ranges[-1][1] = offset
        else:
            ranges.append([offset, offset])
    return ranges


def ledger_entries(dlq: str, partition: int, offsets: list[int]) -> list[tuple[bytes, bytes]]:
    """The ledger records (key, value) saying that these offsets of ``dlq[partition]`` were
    replayed: runs of offsets, at most LEDGER_RANGES runs per record. The key names the DLQ, the
    partition and the first and last offset it covers; no two records of one ledger share a key
    (an offset is replayed once), so compaction never drops one."""
    ranges = offset_ranges(offsets)
    entries = []
    for i in range(0, len(ranges), LEDGER_RANGES):
        part = ranges[i : i + LEDGER_RANGES]
        key = f"{dlq}/{partition}/{part[0][0]}-{part[-1][1]}".encode()
        value = {"dlq": dlq, "partition": partition, "ranges": part, "at": H.now_ms()}
        entries.append((key, orjson.dumps(value)))
    return entries


def _parse_id(text: str) -> tuple[str, int, int] | None:
    topic, _, rest = text.rpartition("/")
    topic, _, partition = topic.rpartition("/")
    try:
        return topic, int(partition), int(rest)
    except ValueError:
        return None


def apply_ledger_record(dlq: str, done: Replayed, key: bytes | None, value: bytes | None) -> None:
    """Mark in ``done`` what one ledger record says about ``dlq``: a run of offsets (this
    version), or one id per record keyed by the id (earlier versions; a tombstone of such a key
    takes the id back)."""
    if key is None:
        return
    text = key.decode("utf-8", "replace")
    if value is not None:
        try:
            entry = orjson.loads(value)
        except orjson.JSONDecodeError:
            entry = None
        if isinstance(entry, dict) and "ranges" in entry:
            if entry.get("dlq") == dlq:
                for first, last in entry["ranges"]:
                    done.add_range(int(entry["partition"]), int(first), int(last))
            return
    coords = _parse_id(text)
    if coords is None or coords[0] != dlq:
        return
    if value is None:
        done.discard(coords[1], coords[2])
    else:
        done.add(coords[1], coords[2])
