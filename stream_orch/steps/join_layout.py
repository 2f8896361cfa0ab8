"""The join's table layout, one per partition (:mod:`stream_orch.steps.join`): the keys it
buffers records, its time index and its watermarks under, and the scan of one key's records.

``L<US>key<US>time<US>offset`` and ``R<US>...`` hold the buffered
records (time zero-padded, so one key's records within a time range are one key range; the key
escaped by :mod:`~stream_orch.steps.table_keys`, so a key holding US cannot reach into another's),
``<RS><side><expiry><RS>entry`` is a time index per side, read only up to the other side's
watermark (no full scans; its value 2 when the left record matched on arrival, ``"m"`` in the
record from the start, so that its expiry reads nothing else; a left record that a right record
matches later gets ``"m"`` rewritten and keeps its entry at 1: its expiry reads it, and then
deletes it without a lookup), ``<GS>watermark.<side>`` the watermarks and
``<GS>expired.<side>`` the time the side's index was last read up to.
"""

from __future__ import annotations

from typing import Any

from stream_orch.steps.base import Table
from stream_orch.topology.models_time import JoinBound

SEP = "\x1f"
INDEX = "\x1e"
INDEX_END = SEP  # the time index keys are those in [INDEX, INDEX_END)
WATERMARK = "\x1dwatermark."
EXPIRED = "\x1dexpired."  # per side: the time its index was read up to (every entry below is gone)
LEFT, RIGHT = "L", "R"
OTHER = {LEFT: RIGHT, RIGHT: LEFT}
MATCHED, UNMATCHED = "matched", "unmatched"
# a time index entry's value; PAIRED: the left record matched on arrival ("m" in it from the start)
WAITING, PAIRED = 1, 2


def entry_key(side: str, key: str, ts: int, uid: int) -> str:
    return f"{side}{SEP}{key}{SEP}{ts:015d}{SEP}{uid:015d}"


def split(bound: int | tuple[str, int]) -> tuple[str | None, int]:
    return (None, int(bound)) if isinstance(bound, int) else (bound[0], int(bound[1]))


def between(table: Table, partition: int, side: str, key: str, lo: int, hi: int) -> list[tuple[str, Any]]:
    """The buffered records of ``side`` and ``key`` with time in ``[lo, hi]``, oldest first."""
    prefix = f"{side}{SEP}{key}{SEP}"
    found = table.scan(partition, f"{prefix}{max(lo, 0):015d}", f"{prefix}{hi + 1:015d}")
    return sorted(found)


def bound_of(bound: int | JoinBound) -> int | tuple[str, int]:
    """A join bound for the step: a duration, or (field, max) when each record carries it."""
    return bound if isinstance(bound, int) else (bound.field, bound.max)
