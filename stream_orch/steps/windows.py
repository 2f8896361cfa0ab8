"""How a key's sliding-window entries are kept in a table: in records of bounded size.

A key whose window holds at most ``CHUNK`` entries is one record, ``key -> {"e": entries, "n":
newest}``. Beyond that the entries live in chunk records ``key<US>id -> entries`` of at most
``CHUNK`` entries each (``<US>`` is the ASCII unit separator), and the key's record lists them:
``{"ids": [...], "next": next id, "n": newest}``. A batch rewrites only the chunks it changed:
the chunk at the head that pruning cut into, the chunks from the first insertion on, and new
chunks for what was appended; chunks pruned whole are deleted. So no changelog record grows with
a key's rate (the hot-key case: 40,000 entries in one window are ~160 records of ~10 KB), and a
key with a few entries costs one record per batch, as before.

Entries are ``[ts, value]`` or ``[ts, value, source offset]`` lists sorted by ``ts``; a record of
the first format (the whole list as the value) is still read, and rewritten in this one.
"""

from __future__ import annotations

from typing import Any

from stream_orch.steps.base import Table

CHUNK = 256
SEPARATOR = "\x1f"
# a window without chunk records: its ids and lengths (shared, never mutated; two lists fewer a load)
_NO_CHUNKS: list[int] = []


def chunk_key(key: str, chunk_id: int) -> str:
    return f"{key}{SEPARATOR}{chunk_id}"


def is_chunk(key: str) -> bool:
    return SEPARATOR in key


def newest_of(head: Any) -> Any:
    """The newest event time a key's record knows, or None for an empty window."""
    if isinstance(head, dict):
        return head.get("n")
    return head[-1][0] if head else None  # the first format: the entries themselves


class Window:
    """A key's entries for one batch, and what changed in them since they were loaded."""

    __slots__ = ("entries", "first_change", "ids", "key", "lengths", "next_id", "pruned")

    def __init__(self, key: str, entries: list[list[Any]], ids: list[int], lengths: list[int], next_id: int):
        self.key = key
        self.entries = entries
        self.ids = ids  # the stored chunks (empty: the key's record holds the entries itself)
        self.lengths = lengths
        self.next_id = next_id
        self.pruned = 0  # entries cut from the head since loading
        self.first_change: int | None = None  # lowest changed position, counted as when loaded

    def changed_at(self, index: int) -> None:
        """An entry was inserted or appended at ``index`` of the current list."""
        at = index + self.pruned
        if self.first_change is None or at < self.first_change:
            self.first_change = at

    def remove(self, index: int) -> None:
        """Take out the entry at ``index`` (the chunks from there on are rewritten)."""
        del self.entries[index]
        self.changed_at(index)

    def drop_head(self, n: int) -> None:
        del self.entries[:n]
        self.pruned += n


def load(table: Table, key: str, partition: int) -> Window:
    head = table.get(key, partition)
    if head.__class__ is dict:
        if "e" in head:  # one record (the common case, tested first)
            return Window(key, list(head["e"]), _NO_CHUNKS, _NO_CHUNKS, head.get("next", 0))
    elif head is None:
        return Window(key, [], _NO_CHUNKS, _NO_CHUNKS, 0)
    else:  # the first format
        window = Window(key, list(head), _NO_CHUNKS, _NO_CHUNKS, 0)
        window.first_change = 0
        return window
    entries: list[list[Any]] = []
    lengths = []
    for chunk_id in head["ids"]:
        chunk = table.get(chunk_key(key, chunk_id), partition) or []
        entries.extend(chunk)
        lengths.append(len(chunk))
    return Window(key, entries, list(head["ids"]), lengths, head["next"])


def save(table: Table, window: Window, partition: int) -> None:
    key, entries = window.key, window.entries
    if not entries:
        for chunk_id in window.ids:
            table.delete(chunk_key(key, chunk_id), partition)
        table.delete(key, partition)
        return
    newest = entries[-1][0]
    if len(entries) <= CHUNK:
        for chunk_id in window.ids:
            table.delete(chunk_key(key, chunk_id), partition)
        table.set(key, {"e": entries, "n": newest, "next": window.next_id}, partition)
        return
    if not window.ids:  # from one record to chunks: everything is written as new chunks
        window.first_change = window.pruned
    kept, rest = _keep_unchanged(table, window, partition)
    next_id = window.next_id
    for start in range(rest, len(entries), CHUNK):
        table.set(chunk_key(key, next_id), entries[start : start + CHUNK], partition)
        kept.append(next_id)
        next_id += 1
    table.set(key, {"ids": kept, "next": next_id, "n": newest}, partition)


def _keep_unchanged(table: Table, window: Window, partition: int) -> tuple[list[int], int]:
    """Walk the stored chunks: delete those pruned whole, rewrite a head chunk pruning cut into,
    keep those untouched, and delete those from the first change on. Returns the chunks kept and
    the position (in the current list) from which the entries go into new chunks."""
    key, entries, pruned, change = window.key, window.entries, window.pruned, window.first_change
    kept: list[int] = []
    start = 0  # where the chunk begins, counted as when loaded
    for chunk_id, length in zip(window.ids, window.lengths, strict=True):
        end = start + length
        if end <= pruned:
            table.delete(chunk_key(key, chunk_id), partition)
        elif change is not None and (end > change or (end == change and length < CHUNK)):
            # from the first change on (a chunk that is not full takes what is appended to it)
            for later, _ in _from(window, chunk_id):
                table.delete(chunk_key(key, later), partition)
            return kept, max(start - pruned, 0)
        else:
            if start < pruned:  # pruning cut into this chunk: it keeps its id, with fewer entries
                table.set(chunk_key(key, chunk_id), entries[: end - pruned], partition)
            kept.append(chunk_id)
        start = end
    return kept, start - pruned


def _from(window: Window, chunk_id: int) -> list[tuple[int, int]]:
    i = window.ids.index(chunk_id)
    return list(zip(window.ids[i:], window.lengths[i:], strict=True))
